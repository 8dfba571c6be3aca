// The images of a project as thumbnails, all, by tag or untagged, a page at a time (projects have thousands);
// select some, then retag, untag or delete them.
'use strict';

import { api } from './api.js';
import { $, Thumbnails, confirmDialog, el, showError } from './dom.js';
import { announce, projectPath, refreshTags, state } from './state.js';

const PAGE = 48;
const view = { filter: 'all', offset: 0, total: 0 };
const thumbs = new Thumbnails();

function query() {
  const q = { offset: view.offset, limit: PAGE };
  if (view.filter === 'untagged') q.untagged = true;
  else if (view.filter !== 'all') q.tag_id = Number(view.filter);
  return q;
}

/** The filter's options: all, each tag with its count, untagged. Keeps the current choice when it still exists. */
export function drawFilter() {
  const options = [el('option', { value: 'all', textContent: 'All images' })];
  for (const t of state.tags) {
    options.push(el('option', { value: String(t.id), textContent: `${t.name} (${t.image_count})` }));
  }
  options.push(el('option', { value: 'untagged', textContent: 'Untagged' }));
  $('gallery-filter').replaceChildren(...options);
  if (!options.some((o) => o.value === view.filter)) { view.filter = 'all'; view.offset = 0; }
  $('gallery-filter').value = view.filter;
  $('retag-to').replaceChildren(...state.tags.map((t) => el('option', { value: String(t.id), textContent: t.name })));
  $('add-tag').hidden = !(state.project && state.project.multi_label);
}

function thumbItem(image) {
  const tags = image.tags.length ? image.tags.join(', ') : 'untagged';
  const box = el('input', { type: 'checkbox', value: String(image.id), id: `pick-${image.id}` });
  return el('li', { className: 'thumb', dataset: { imageId: image.id, tags: image.tags.join(',') } },
    thumbs.img(`${projectPath(`/images/${image.id}/thumbnail`)}?size=160`, `image ${image.id}, ${tags}`),
    el('label', { htmlFor: box.id, className: 'pick' }, box,
      el('span', { textContent: `${image.original_name || 'image ' + image.id} · ${tags}` })));
}

/** Redraw the current page of thumbnails. */
export async function drawGallery() {
  if (!state.project) return;
  try {
    const page = await api(projectPath('/images'), { query: query() });
    if (page.images.length === 0 && view.offset > 0 && page.total > 0) {   // the last page emptied: step back
      view.offset = Math.max(0, view.offset - PAGE);
      return drawGallery();
    }
    view.total = page.total;
    thumbs.release();
    $('gallery').replaceChildren(...page.images.map(thumbItem));
    const last = Math.min(view.offset + PAGE, page.total);
    $('gallery-count').textContent = `${page.total} image${page.total === 1 ? '' : 's'}`;
    $('gallery-page').textContent = page.total ? `${view.offset + 1}–${last} of ${page.total}` : '';
    $('gallery-prev').disabled = view.offset === 0;
    $('gallery-next').disabled = last >= page.total;
    showError('gallery-error', '');
  } catch (err) {
    showError('gallery-error', err);
  }
}

const selected = () => [...document.querySelectorAll('#gallery input[type=checkbox]:checked')]
  .map((b) => Number(b.value));

async function act(what) {
  const ids = selected();
  if (!ids.length) return showError('gallery-error', 'Select images first (the boxes under the thumbnails).');
  try {
    if (what === 'delete') {
      if (!await confirmDialog(`Delete ${ids.length} image${ids.length > 1 ? 's' : ''} from the project?`,
        'Delete the images')) return;
      await api(projectPath('/images'), { method: 'DELETE', query: { image_id: ids } });
    } else {
      // set: the chosen tag replaces theirs; add (multi-label): it joins theirs; untag: none left
      const tagIds = what === 'untag' ? [] : [Number($('retag-to').value)];
      const mode = what === 'add' ? 'add' : 'replace';
      await api(projectPath('/images/tags'), { method: 'POST', json: { image_ids: ids, tag_ids: tagIds, mode } });
    }
    showError('gallery-error', '');
  } catch (err) {
    showError('gallery-error', err);
  }
  await refreshTags().catch((err) => showError('gallery-error', err));
  announce('images');
}

export function resetGallery() {
  view.filter = 'all';
  view.offset = 0;
}

export function initGallery() {
  $('gallery-filter').addEventListener('change', () => {
    view.filter = $('gallery-filter').value;
    view.offset = 0;
    drawGallery();
  });
  $('gallery-prev').addEventListener('click', () => { view.offset = Math.max(0, view.offset - PAGE); drawGallery(); });
  $('gallery-next').addEventListener('click', () => { view.offset += PAGE; drawGallery(); });
  $('select-page').addEventListener('click', () => {
    const boxes = [...document.querySelectorAll('#gallery input[type=checkbox]')];
    const all = boxes.every((b) => b.checked);
    boxes.forEach((b) => { b.checked = !all; });
  });
  $('retag').addEventListener('click', () => act('retag'));
  $('add-tag').addEventListener('click', () => act('add'));
  $('untag').addEventListener('click', () => act('untag'));
  $('delete-images').addEventListener('click', () => act('delete'));
}
