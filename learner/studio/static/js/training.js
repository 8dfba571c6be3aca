// Training: start a quick or advanced (time budget) job, follow its progress live (phase, epoch, loss, accuracy,
// ETA) from the job's server-sent events, cancel it; a refusal or a failure is shown with the server's reason.
'use strict';

import { api, follow } from './api.js';
import { $, el, number, percent, showError } from './dom.js';
import { projectPath, refreshIterations, state, viewHref } from './state.js';

const ACTIVE = ['queued', 'running'];
let following = null;        // {jobId, projectId, controller} of the job drawn now

function seconds(s) {
  if (s === null || s === undefined) return '–';
  s = Math.round(s);
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

/** The fraction of the current phase done, or null when the phase has no measure (the bar then just moves). */
export function phaseFraction(job) {
  const p = job.progress || {};
  if (job.status === 'succeeded') return 1;
  if (!p.n_epochs || p.epoch === null || p.epoch === undefined || !p.n_batches) return null;
  return Math.min(1, (p.epoch + (p.batch || 0) / p.n_batches) / p.n_epochs);
}

function statusLine(job) {
  const p = job.progress || {};
  switch (job.status) {
    case 'queued': return 'Queued: waiting for a worker.';
    case 'running': {
      let text = `Running: ${p.phase || 'starting'}`;
      if (p.n_epochs && p.epoch !== null && p.epoch !== undefined) text += `, epoch ${p.epoch + 1} of ${p.n_epochs}`;
      if (p.n_batches && p.batch) text += `, batch ${p.batch} of ${p.n_batches}`;
      return text + '.';
    }
    case 'succeeded': return `Done: iteration ${p.iteration || ''} is ready.`;
    case 'cancelled': return 'Cancelled.';
    default: return 'Failed.';
  }
}

function drawEpochs(job) {
  const rows = ((job.progress || {}).epochs || []).map((e) => el('tr', {},
    el('td', { textContent: e.phase }), el('td', { textContent: String(e.epoch + 1) }),
    el('td', { textContent: number(e.train_loss) }), el('td', { textContent: number(e.valid_loss) }),
    el('td', { textContent: percent(e.accuracy) })));
  document.querySelector('#job-epochs tbody').replaceChildren(...rows);
}

/** Draw a job's row as the server sent it. */
export function drawJob(job) {
  const p = job.progress || {};
  $('job').hidden = false;
  $('job').dataset.jobId = String(job.id);
  $('job').dataset.status = job.status;
  $('job').dataset.phase = p.phase || '';
  const budget = job.mode === 'advanced' ? `, ${job.budget_minutes} min budget` : '';
  $('job-title').textContent = `Training job ${job.id} (${job.mode}${budget}) on ${job.n_train} + ${job.n_valid} ` +
    'images';
  const fraction = phaseFraction(job);
  if (fraction === null) $('job-progress').removeAttribute('value');
  else $('job-progress').value = Math.round(100 * fraction);
  $('job-status').textContent = statusLine(job);
  const figures = [['Phase', p.phase || job.status], ['Train loss', number(p.train_loss)],
    ['Valid loss', number(p.valid_loss)], ['Accuracy', percent(p.accuracy)], ['ETA', seconds(p.eta_s)],
    ['Elapsed', seconds(p.elapsed_s)]];
  $('job-figures').replaceChildren(...figures.flatMap(([name, value]) => [
    el('dt', { textContent: name }), el('dd', { textContent: value, dataset: { figure: name.toLowerCase() } })]));
  drawEpochs(job);
  const active = ACTIVE.includes(job.status);
  $('job-cancel').hidden = !active;
  $('train-start').disabled = active;
  showError('job-error', job.status === 'failed' ? `The training failed: ${job.error || 'no reason given'}` : '');
  const listed = document.querySelector(`#job-history li[data-job-id="${job.id}"]`);
  if (listed) listed.replaceWith(historyItem(job));
  const link = $('job-iteration');
  link.hidden = job.status !== 'succeeded';
  if (job.status === 'succeeded') {
    link.textContent = `See iteration ${p.iteration || ''}`;
    link.href = viewHref('iterations');
  }
}

async function followJob(job) {
  if (following) following.controller.abort();
  const mine = { jobId: job.id, projectId: job.project_id, controller: new AbortController() };
  following = mine;
  drawJob(job);
  while (following === mine && ACTIVE.includes(job.status)) {
    try {
      await follow(`jobs/${job.id}/events`, (row) => { if (following === mine) { job = row; drawJob(row); } },
        mine.controller.signal);
    } catch (err) {
      if (err.name === 'AbortError') return;
      showError('train-error', err);
      if (err.status === 401 || err.status === 404) return;    // no key any more, or the job is gone: stop
      await new Promise((r) => setTimeout(r, 2000));   // the stream broke: read the row again, then reconnect
      if (following === mine) showError('train-error', '');
    }
    if (following !== mine) return;
    job = await api(`jobs/${job.id}`).catch(() => job);
    drawJob(job);
  }
  if (following === mine && job.status === 'succeeded') await refreshIterations().catch(() => {});
  if (following === mine) await drawHistory().catch(() => {});
}

function historyItem(job) {
  let text = `Job ${job.id} · ${job.mode} · ${job.status}`;
  const iteration = job.progress && job.progress.iteration;
  if (job.status === 'succeeded' && iteration) text += ` → iteration ${iteration}`;
  if (job.status === 'failed') text += `: ${job.error}`;
  return el('li', { textContent: text, dataset: { jobId: job.id, status: job.status } });
}

async function drawHistory() {
  const jobs = await api(projectPath('/jobs'));
  $('job-history').replaceChildren(...jobs.map(historyItem));
  return jobs;
}

/** The Train view of the open project: its jobs, and the live one if any. */
export async function showTraining() {
  showError('train-error', '');
  try {
    const jobs = await drawHistory();
    const active = jobs.find((j) => ACTIVE.includes(j.status));
    if (active && !(following && following.jobId === active.id)) followJob(active);
    else if (!following || following.projectId !== state.project.id) stopFollowing();
  } catch (err) {
    showError('train-error', err);
  }
}

/** Stop drawing a job (another project was opened). */
export function stopFollowing() {
  if (following) following.controller.abort();
  following = null;
  $('job').hidden = true;
  $('train-start').disabled = false;
}

async function start(event) {
  event.preventDefault();
  showError('train-error', '');
  const advanced = $('mode-advanced').checked;
  const body = { mode: advanced ? 'advanced' : 'quick' };
  if (advanced) body.budget_minutes = Number($('train-budget').value);
  try {
    const job = await api(projectPath('/train'), { method: 'POST', json: body });
    followJob(job);
    drawHistory().catch(() => {});
  } catch (err) {
    showError('train-error', err);
  }
}

async function cancel() {
  if (!following) return;
  try {
    drawJob(await api(`jobs/${following.jobId}/cancel`, { method: 'POST' }));
  } catch (err) {
    showError('train-error', err);
  }
}

export function initTraining() {
  $('train-form').addEventListener('submit', start);
  $('job-cancel').addEventListener('click', cancel);
  for (const id of ['mode-quick', 'mode-advanced']) {
    $(id).addEventListener('change', () => { $('train-budget').disabled = !$('mode-advanced').checked; });
  }
}
