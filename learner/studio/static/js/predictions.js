// The retrain loop: images sent to the prediction URL, most uncertain first, with what was predicted; one click
// confirms or corrects the tag (the image then joins the training set).
'use strict';

import { api } from './api.js';
import { $, Thumbnails, bars, el, percent, showError } from './dom.js';
import { announce, projectPath, refreshTags, state } from './state.js';

const PAGE = 24;
const view = { offset: 0, total: 0 };
const thumbs = new Thumbnails();

function tagLine(p) {
  return p.tags.length ? `Tagged ${p.tags.join(', ')}: in the training set.` : 'Not tagged yet.';
}

async function setTags(prediction, names, card, clicked) {
  showError('predictions-error', '');
  try {
    const updated = await api(projectPath(`/predictions/${prediction.id}/tags`),
      { method: 'POST', json: { tags: names } });
    const redrawn = predictionCard(updated);
    card.replaceWith(redrawn);
    redrawn.querySelector(`button[data-tag="${CSS.escape(clicked)}"]`).focus();   // keep the keyboard where it was
    // other cards of the same image (sent more than once) show its tags too: redraw them with the new ones
    for (const other of document.querySelectorAll(`#predictions li.prediction[data-image-id="${updated.image_id}"]`)) {
      if (other === redrawn) continue;
      const shown = { ...other.prediction, tags: updated.tags };
      other.replaceWith(predictionCard(shown));
    }
    await refreshTags();
    announce('images');
  } catch (err) {
    showError('predictions-error', err);
  }
}

function tagButtons(prediction, card) {
  const multi = state.project.multi_label;
  return state.tags.map((tag) => {
    const has = prediction.tags.includes(tag.name);
    const predicted = multi ? prediction.predictions.some((p) => p.tag === tag.name && p.probability >= 0.5)
      : prediction.top_tag === tag.name;
    const verb = multi ? (has ? 'Remove' : 'Add') : predicted ? 'Confirm' : 'Correct to';
    const toggled = has ? prediction.tags.filter((t) => t !== tag.name) : [...prediction.tags, tag.name];
    const next = multi ? toggled : [tag.name];
    return el('button', {
      type: 'button', textContent: `${verb} ${tag.name}`, className: predicted ? 'predicted' : '',
      dataset: { tag: tag.name }, attrs: { 'aria-pressed': String(has) },
      onclick: () => setTags(prediction, next, card(), tag.name),
    });
  });
}

function predictionCard(p) {
  const list = el('ol', { className: 'bars', attrs: { 'aria-label': 'predicted tags' } });
  bars(list, p.predictions);
  let card = null;
  const buttons = el('div', { className: 'row' }, ...tagButtons(p, () => card));
  const data = { predictionId: p.id, imageId: p.image_id, tags: p.tags.join(',') };
  card = el('li', { className: 'card prediction', dataset: data },
    thumbs.img(`${projectPath(`/images/${p.image_id}/thumbnail`)}?size=160`, `predicted image ${p.image_id}`),
    el('div', { className: 'stack' },
      el('p', { className: 'small muted', textContent: `Uncertainty ${percent(p.uncertainty)} · ` +
        new Date(p.created_at * 1000).toLocaleString() }),
      list,
      el('p', { className: 'tagged', textContent: tagLine(p) }),
      buttons));
  card.prediction = p;      // what the card was drawn from (another card of its image redraws it)
  return card;
}

/** Redraw the current page of stored predictions. */
export async function showPredictions() {
  try {
    const page = await api(projectPath('/predictions'), {
      query: { offset: view.offset, limit: PAGE, untagged_only: $('predictions-untagged').checked } });
    view.total = page.total;
    thumbs.release();
    $('predictions').replaceChildren(...page.predictions.map(predictionCard));
    const last = Math.min(view.offset + PAGE, page.total);
    $('predictions-count').textContent = page.total
      ? `${view.offset + 1}–${last} of ${page.total} stored predictions` : 'No stored prediction yet: publish an ' +
        'iteration and send images to its prediction URL.';
    $('predictions-prev').disabled = view.offset === 0;
    $('predictions-next').disabled = last >= page.total;
    showError('predictions-error', '');
  } catch (err) {
    showError('predictions-error', err);
  }
}

export function resetPredictions() {
  view.offset = 0;
}

export function initPredictions() {
  $('predictions-untagged').addEventListener('change', () => { view.offset = 0; showPredictions(); });
  $('predictions-prev').addEventListener('click', () => {
    view.offset = Math.max(0, view.offset - PAGE);
    showPredictions();
  });
  $('predictions-next').addEventListener('click', () => { view.offset += PAGE; showPredictions(); });
}
