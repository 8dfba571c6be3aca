// Two iterations side by side at the slider's threshold: their data, precision, recall, AP per tag, and accuracy
// on the validation images both held out (the split is fixed per image, so they share most of them).
'use strict';

import { api } from './api.js';
import { $, el, percent, showError } from './dom.js';
import { threshold } from './iterations.js';
import { projectPath } from './state.js';

function rows(result) {
  const [a, b] = result.iterations;
  const tags = a.report.per_class.map((c) => c.class);
  const apOf = (side, tag) => (side.report.per_class.find((c) => c.class === tag) || {}).average_precision;
  return [
    ['Training images', a.n_train, b.n_train],
    ['Validation images', a.n_valid, b.n_valid],
    [`Accuracy on the ${result.n_shared_valid} validation images both held out`,
      percent(a.accuracy_on_shared), percent(b.accuracy_on_shared)],
    ['Precision', percent(a.report.precision), percent(b.report.precision)],
    ['Recall', percent(a.report.recall), percent(b.report.recall)],
    ['Mean average precision', percent(a.report.mean_average_precision), percent(b.report.mean_average_precision)],
    ...tags.map((tag) => [`AP of ${tag}`, percent(apOf(a, tag)), percent(apOf(b, tag))]),
  ];
}

async function compare(event) {
  event.preventDefault();
  showError('compare-error', '');
  const a = $('compare-a').value;
  const b = $('compare-b').value;
  try {
    const result = await api(projectPath('/iterations/compare'), { query: { a, b, threshold: threshold() } });
    const [first, second] = result.iterations;
    const head = el('tr', {}, el('th', { textContent: `at threshold ${Math.round(100 * result.threshold)}%` }),
      el('th', { scope: 'col', textContent: `Iteration ${first.number}` }),
      el('th', { scope: 'col', textContent: `Iteration ${second.number}` }));
    const body = rows(result).map(([name, x, y]) => el('tr', {},
      el('th', { scope: 'row', textContent: name }),
      el('td', { textContent: String(x) }), el('td', { textContent: String(y) })));
    $('compare').replaceChildren(el('thead', {}, head), el('tbody', {}, ...body));
    $('compare').hidden = false;
  } catch (err) {
    $('compare').hidden = true;
    showError('compare-error', err);
  }
}

export function initCompare() {
  $('compare-form').addEventListener('submit', compare);
}
