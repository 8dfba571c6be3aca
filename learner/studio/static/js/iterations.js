// An iteration's validation results: per-tag and overall precision, recall and average precision; a threshold
// slider that moves precision and recall at once (from the stored threshold table, no request per step); the
// confusion matrix and the images it got wrong at the slider's threshold (asked when the slider settles).
'use strict';

import { api } from './api.js';
import { $, Thumbnails, el, percent, showError } from './dom.js';
import { on, projectPath, state } from './state.js';

const current = { iteration: null, table: null, latestId: null };
const wrongThumbs = new Thumbnails();
let settleTimer = null;

export const threshold = () => Number($('threshold').value) / 100;
export const selectedIteration = () => current.iteration;

function nearestIndex(thresholds, t) {
  let best = 0;
  thresholds.forEach((v, k) => { if (Math.abs(v - t) < Math.abs(thresholds[best] - t)) best = k; });
  return best;
}

function iterationLabel(it) {
  return `Iteration ${it.number} (${it.mode})` + (it.published_name ? ` · published as ${it.published_name}` : '');
}

/** Fill every iteration <select> of the page: a new iteration is chosen as it arrives (and compared with the one
 * before it); otherwise each select keeps its choice. */
export function drawIterationChoices() {
  const its = state.iterations;
  const latestId = its.length ? its[its.length - 1].id : null;
  const arrived = latestId !== current.latestId;
  current.latestId = latestId;
  const fill = (id, pick) => {
    const select = $(id);
    const previous = select.value;
    select.replaceChildren(...its.map((it) => el('option', { value: String(it.id), textContent: iterationLabel(it) })));
    select.value = !arrived && its.some((it) => String(it.id) === previous) ? previous : pick;
  };
  const latest = its.length ? String(its[its.length - 1].id) : '';
  const before = its.length > 1 ? String(its[its.length - 2].id) : latest;
  fill('iteration-select', latest);
  fill('quicktest-iteration', latest);
  fill('compare-a', before);
  fill('compare-b', latest);
  $('no-iterations').hidden = its.length > 0;
  $('iteration-body').hidden = its.length === 0;
}

function drawRates() {
  const t = threshold();
  $('threshold-value').textContent = Math.round(100 * t) + '%';
  const table = current.table;
  if (!table) return;
  const k = nearestIndex(table.thresholds, t);
  $('overall-precision').textContent = percent(table.overall.precision[k]);
  $('overall-recall').textContent = percent(table.overall.recall[k]);
  document.querySelectorAll('#per-tag tbody tr').forEach((row, j) => {
    row.querySelector('.precision').textContent = percent(table.precision[k][j]);
    row.querySelector('.recall').textContent = percent(table.recall[k][j]);
  });
}

function drawPerTag(report) {
  const rows = report.per_class.map((c) => el('tr', { dataset: { tag: c.class } },
    el('th', { scope: 'row', textContent: c.class }), el('td', { className: 'precision', textContent: '–' }),
    el('td', { className: 'recall', textContent: '–' }),
    el('td', { className: 'ap', textContent: percent(c.average_precision) }),
    el('td', { className: 'n', textContent: String(c.n) })));
  document.querySelector('#per-tag tbody').replaceChildren(...rows);
  $('overall-ap').textContent = percent(report.mean_average_precision);
  $('threshold-help').textContent = current.iteration.multi_label
    ? 'A tag counts as predicted when its own probability is at or over the threshold.'
    : 'An image counts as predicted (as its most likely tag) only when that probability is at or over the ' +
      'threshold; below it the model abstains. AP does not depend on the threshold.';
}

function drawConfusion(report) {
  const classes = report.per_class.map((c) => c.class);
  const table = $('confusion');
  const cell = (tag, text, props = {}) => el(tag, { textContent: String(text), ...props });
  if (current.iteration.multi_label) {
    const names = ['right absent', 'false alarm', 'missed', 'right present'];
    const head = el('tr', {}, cell('th', 'Tag'), ...names.map((h) => cell('th', h)));
    const rows = classes.map((name, j) => {
      const [[tn, fp], [fn, tp]] = report.confusion_matrix[j];
      return el('tr', {}, cell('th', name, { scope: 'row' }), ...[tn, fp, fn, tp].map((n) => cell('td', n)));
    });
    table.replaceChildren(el('thead', {}, head), el('tbody', {}, ...rows));
    return;
  }
  const head = el('tr', {}, cell('th', 'tagged \\ predicted'), ...classes.map((c) => cell('th', c, { scope: 'col' })));
  const rows = report.confusion_matrix.map((counts, i) => el('tr', {}, cell('th', classes[i], { scope: 'row' }),
    ...counts.map((n, j) => cell('td', n, { className: !n ? '' : i === j ? 'diagonal' : 'off' }))));
  table.replaceChildren(el('thead', {}, head), el('tbody', {}, ...rows));
}

function drawWrong(wrong) {
  wrongThumbs.release();
  $('wrong-none').hidden = wrong.length > 0;
  $('wrong').replaceChildren(...wrong.slice(0, 48).map((w) => {
    const predicted = w.predicted.length ? w.predicted.join(', ') : 'nothing over the threshold';
    const caption = `tagged ${w.tags.join(', ')}, predicted ${predicted}`;
    return el('li', { className: 'thumb', dataset: { imageId: w.image_id } },
      wrongThumbs.img(`${projectPath(`/images/${w.image_id}/thumbnail`)}?size=160`, `image ${w.image_id}: ${caption}`),
      el('p', { className: 'small', textContent: `${caption} (${percent(w.probability_of_truth)} for the truth)` }));
  }));
}

/** Confusion matrix and wrong images at the slider's threshold. */
async function drawAtThreshold() {
  const it = current.iteration;
  if (!it) return;
  const path = projectPath(`/iterations/${it.id}`);
  try {
    const [report, wrong] = await Promise.all([api(`${path}/performance`, { query: { threshold: threshold() } }),
      api(`${path}/wrong`, { query: { threshold: threshold() } })]);
    if (current.iteration !== it) return;
    drawConfusion(report);
    drawWrong(wrong);
  } catch (err) {
    showError('iteration-error', err);
  }
}

function summary(it) {
  const when = new Date(it.created_at * 1000).toLocaleString();
  return `${it.mode} training of ${it.backbone} at ${it.size} px on ${it.n_train} images, ` +
    `validated on ${it.n_valid}; ${when}` +
    (it.published_name ? `; published as ${it.published_name}` : '');
}

/** Load and draw the iteration chosen in the select. */
export async function drawIteration() {
  const id = Number($('iteration-select').value);
  const it = state.iterations.find((i) => i.id === id);
  if (!it) return;
  current.iteration = it;
  $('iteration-summary').textContent = summary(it);
  showError('iteration-error', '');
  try {
    const path = projectPath(`/iterations/${it.id}`);
    const [table, report] = await Promise.all([api(`${path}/thresholds`),
      api(`${path}/performance`, { query: { threshold: threshold() } })]);
    if (current.iteration !== it) return;
    current.table = table;
    drawPerTag(report);
    drawRates();
    drawConfusion(report);
    $('iteration-body').dataset.iterationId = String(it.id);
    drawWrong(await api(`${path}/wrong`, { query: { threshold: threshold() } }));
  } catch (err) {
    showError('iteration-error', err);
  }
}

export function initIterations() {
  $('iteration-select').addEventListener('change', () => drawIteration());
  $('threshold').addEventListener('input', () => {
    drawRates();
    clearTimeout(settleTimer);
    settleTimer = setTimeout(drawAtThreshold, 300);
  });
  on('iterations', drawIterationChoices);
}
