// Tags and uploads: each tag (and "untagged") is a drop target and a file picker; dropped files go up in requests
// that fit the server's limits, each with a progress bar, and each file's report is listed as the server gave it:
// stored, duplicate of image N (stored once), near-duplicate of image N, a conflicting tag, or why it was refused.
'use strict';

import { api, upload } from './api.js';
import { $, bytes, confirmDialog, dropZone, el, showError } from './dom.js';
import { announce, projectPath, refreshTags, state } from './state.js';

const FILES_PER_REQUEST = 16;
const BYTES_PER_REQUEST = 16 * 1024 * 1024;
const FORM_OVERHEAD = 512;          // bytes a multipart part adds around a file (headers, boundary)

/** Files in requests of at most FILES_PER_REQUEST and the server's body limit; a file over it goes alone. */
export function batches(files, limits) {
  const room = Math.min(BYTES_PER_REQUEST, limits.max_upload_bytes - 4096);
  const count = Math.max(1, Math.min(FILES_PER_REQUEST, limits.max_files));
  const out = [];
  let batch = [];
  let size = 0;
  for (const file of files) {
    const cost = file.size + FORM_OVERHEAD;
    if (batch.length && (batch.length === count || size + cost > room)) {
      out.push(batch);
      batch = [];
      size = 0;
    }
    batch.push(file);
    size += cost;
  }
  if (batch.length) out.push(batch);
  return out;
}

function nearText(near) {
  return near.map((n) => `image ${n.image_id}` + (n.tags.length ? ` (${n.tags.join(', ')})` : ' (untagged)') +
    (n.conflicting ? ': conflicting tag' : '')).join('; ');
}

/** One file's report in words (see learner/studio/ingest.py for what the server reports). */
export function reportText(r) {
  // the server's reason starts with the file's name, which the report already shows
  const named = `${r.filename}: `;
  if (r.status === 'error') return r.error.startsWith(named) ? r.error.slice(named.length) : r.error;
  if (r.status === 'duplicate') {
    let text = `duplicate of image ${r.duplicate_of}: the same bytes, stored once`;
    if (r.conflicting) text += `; conflicting tag: image ${r.duplicate_of} is tagged ${r.tags.join(', ')}`;
    else if (r.tagged_now) text += `; it now has the tag ${r.tags.join(', ')}`;
    return text;
  }
  let text = `stored as image ${r.image_id}`;
  if (r.near_duplicates && r.near_duplicates.length) text += `; near-duplicate of ${nearText(r.near_duplicates)}`;
  return text;
}

function reportItem(r) {
  const conflicting = r.conflicting || (r.near_duplicates || []).some((n) => n.conflicting);
  const data = r.image_id ? { status: r.status, imageId: r.image_id } : { status: r.status };
  return el('li', { className: `report ${r.status}${conflicting ? ' conflicting' : ''}`, dataset: data },
    el('span', { className: 'file', textContent: r.filename }), ': ', el('span', { textContent: reportText(r) }));
}

async function sendBatch(files, tag, index, total) {
  const where = tag ? `to ${tag.name}` : 'untagged';
  const size = files.reduce((n, f) => n + f.size, 0);
  const progress = el('progress', { max: 100, value: 0,
    attrs: { 'aria-label': `upload ${index} of ${total} ${where}` } });
  const status = el('span', { className: 'status', textContent: 'waiting' });
  const list = el('ul', { className: 'report-list' });
  const row = el('li', { className: 'upload', dataset: { tag: tag ? tag.name : '' } },
    el('p', {}, el('strong', { textContent: `${files.length} file${files.length > 1 ? 's' : ''} ${where}` }),
      ` (${bytes(size)}) · `, status),
    progress, list);
  $('uploads').prepend(row);
  const form = new FormData();
  for (const file of files) form.append('files', file, file.name);
  const query = tag ? `?tag_id=${tag.id}` : '';
  try {
    status.textContent = 'sending';
    const answer = await upload(projectPath(`/images${query}`), form, (f) => {
      progress.value = Math.round(100 * f);
      status.textContent = f < 1 ? `sending ${Math.round(100 * f)}%` : 'checking the images';
    });
    progress.value = 100;
    const s = answer.body.summary;
    status.textContent = `${s.created} stored, ${s.duplicate} duplicate${s.duplicate === 1 ? '' : 's'}, ` +
      `${s.error} refused`;
    row.classList.add(s.error ? 'partly' : 'done');
    list.append(...answer.body.results.map(reportItem));
  } catch (err) {
    row.classList.add('failed');
    status.textContent = 'failed';
    list.append(el('li', { className: 'report error', dataset: { status: 'request-error' },
      textContent: err.message }));
  }
}

/** Upload files under `tag` (null: untagged), a request at a time, then redraw counts and the gallery. */
export async function uploadFiles(files, tag) {
  const list = $('uploads');
  const groups = batches(files, state.limits);
  list.dataset.busy = String(Number(list.dataset.busy || 0) + 1);     // drops still sending (0: all ended)
  try {
    for (const [k, group] of groups.entries()) {
      await sendBatch(group, tag, k + 1, groups.length);
      await refreshTags().catch(() => {});
      announce('images');
    }
  } finally {
    list.dataset.busy = String(Number(list.dataset.busy) - 1);
  }
}

function tagItem(tag) {
  const id = tag ? `upload-tag-${tag.id}` : 'upload-untagged';
  const name = tag ? tag.name : 'Untagged';
  const input = el('input', { type: 'file', id, multiple: true, accept: 'image/*',
    attrs: { 'aria-label': tag ? `Add images to the tag ${tag.name}` : 'Add images without a tag' } });
  const count = tag ? `${tag.image_count} image${tag.image_count === 1 ? '' : 's'}` : '';
  const zone = el('label', { className: 'drop', htmlFor: id },
    el('span', { className: 'tag-name', textContent: name }),
    el('span', { className: 'count muted', textContent: count }),
    el('span', { className: 'muted small', textContent: 'Drop photos here, or pick them' }),
    input);
  dropZone(zone, input, (files) => uploadFiles(files, tag));
  const item = el('li', { className: 'tag', dataset: { tag: tag ? tag.name : '' } }, zone);
  if (tag) {
    item.append(el('button', { type: 'button', className: 'danger small', textContent: 'Delete the tag',
      attrs: { 'aria-label': `Delete the tag ${tag.name}` }, onclick: () => deleteTag(tag) }));
  }
  return item;
}

async function deleteTag(tag) {
  if (!await confirmDialog(`Delete the tag "${tag.name}"? Its ${tag.image_count} image${tag.image_count === 1 ? '' : 's'} stay${tag.image_count === 1 ? 's' : ''}, without it.`,
    'Delete the tag')) return;
  try {
    await api(projectPath(`/tags/${tag.id}`), { method: 'DELETE' });
    showError('tag-error', '');
  } catch (err) {
    showError('tag-error', err);
  }
  await refreshTags().catch((err) => showError('tag-error', err));
  announce('images');
}

export function drawTags() {
  $('tag-list').replaceChildren(...state.tags.map(tagItem), tagItem(null));
}

async function createTag(event) {
  event.preventDefault();
  showError('tag-error', '');
  try {
    await api(projectPath('/tags'), { method: 'POST', json: { name: $('tag-name').value.trim() } });
    $('tag-name').value = '';
    await refreshTags();
  } catch (err) {
    showError('tag-error', err);
  }
}

export function initUploads() {
  $('tag-form').addEventListener('submit', createTag);
}
