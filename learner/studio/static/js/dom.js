// Small DOM helpers shared by the page's sections: building elements, showing errors in words, the delete
// confirmation, number formats, bars, and thumbnails fetched with the key.
'use strict';

import { imageUrl } from './api.js';

export const $ = (id) => document.getElementById(id);

/** el('button', {type: 'button', textContent: 'Go', onclick}, child, ...): an element with properties and children. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === 'dataset') Object.assign(node.dataset, value);
    else if (name === 'attrs') for (const [a, v] of Object.entries(value)) node.setAttribute(a, v);
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node[name] = value;
  }
  node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

/** Show `error` (an ApiError, an Error or text) in the alert element `id`; empty hides it. */
export function showError(id, error) {
  const node = $(id);
  const text = !error ? '' : typeof error === 'string' ? error : error.message || String(error);
  node.textContent = text;
  node.hidden = !text;
}

export const percent = (v) => (v === null || v === undefined || Number.isNaN(v) ? '–' : (100 * v).toFixed(1) + '%');
export const number = (v, digits = 3) => (v === null || v === undefined ? '–' : Number(v).toFixed(digits));

export function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

/** The native modal dialog, resolving true when the person confirms. Escape and "Keep it" resolve false. */
export function confirmDialog(text, yes = 'Delete') {
  const dialog = $('confirm');
  $('confirm-text').textContent = text;
  $('confirm-yes').textContent = yes;
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.returnValue = 'cancel';
    dialog.showModal();
    $('confirm-no').focus();   // the safe choice has the focus
  });
}

/** Probability bars: one <li> per {tag, probability}, highlighted at or over `threshold`. */
export function bars(list, rows, threshold = 0.5) {
  list.replaceChildren(...rows.map((p) => {
    const fill = el('span', { className: 'fill' });
    fill.style.width = (100 * p.probability).toFixed(1) + '%';
    return el('li', { dataset: { tag: p.tag }, className: p.probability >= threshold ? 'over' : '' },
      el('span', { className: 'name', textContent: p.tag, title: p.tag }),
      el('span', { className: 'track', attrs: { 'aria-hidden': 'true' } }, fill),
      el('span', { className: 'pct', textContent: percent(p.probability) }));
  }));
}

// Thumbnails come through fetch with the key, a few at a time (a page of them should not queue 48 requests in
// front of the calls the person is waiting for); object URLs are revoked when their gallery is redrawn.
const MAX_LOADING = 4;
let loading = 0;
const waiting = [];

function pump() {
  while (loading < MAX_LOADING && waiting.length) {
    const { img, path, owned } = waiting.shift();
    if (!img.isConnected) continue;
    loading += 1;
    imageUrl(path).then((url) => { owned.push(url); img.src = url; })
      .catch(() => { img.alt = `${img.alt} (could not be loaded)`; img.classList.add('missing'); })
      .finally(() => { loading -= 1; pump(); });
  }
}

/** A set of thumbnails drawn together: `img(path, alt)` makes one; `release()` frees them before a redraw. */
export class Thumbnails {
  constructor() { this.owned = []; }

  img(path, alt) {
    const img = el('img', { alt, loading: 'lazy', width: 160, height: 160 });
    waiting.push({ img, path, owned: this.owned });
    queueMicrotask(pump);
    return img;
  }

  release() {
    for (const url of this.owned.splice(0)) URL.revokeObjectURL(url);
  }
}

/** Make `zone` (a <label> around a file input) take dropped files too; `onFiles([File])`. */
export function dropZone(zone, input, onFiles) {
  zone.addEventListener('dragover', (e) => { e.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    if (e.dataTransfer && e.dataTransfer.files.length) onFiles(Array.from(e.dataTransfer.files));
  });
  input.addEventListener('change', () => {
    if (input.files.length) onFiles(Array.from(input.files));
    input.value = '';
  });
}
