// The studio page: asks for the training key once per tab, then routes by the address's hash
// (#/ the projects, #/projects/ID/VIEW one project's section) and wires the sections together.
'use strict';

import { api, forgetTrainingKey, setPredictionKey, setTrainingKey, trainingKey, whenUnauthorized } from './api.js';
import { initCompare } from './compare.js';
import { $, showError } from './dom.js';
import { drawFilter, drawGallery, initGallery, resetGallery } from './gallery.js';
import { drawIteration, drawIterationChoices, initIterations } from './iterations.js';
import { initPredictions, resetPredictions, showPredictions } from './predictions.js';
import { initProjects, showProjects } from './projects.js';
import { drawPublished, initPublish } from './publish.js';
import { initQuickTest } from './quicktest.js';
import { on, refreshIterations, refreshProject, refreshTags, state, viewHref } from './state.js';
import { initTraining, showTraining, stopFollowing } from './training.js';
import { drawTags, initUploads } from './uploads.js';

const VIEWS = ['images', 'train', 'iterations', 'predictions', 'quicktest'];

function showOnly(id) {
  for (const section of ['key-view', 'projects-view', 'project-view']) $(section).hidden = section !== id;
  $('forget-key').hidden = id === 'key-view';
}

function askForKey(message = '') {
  const asking = !$('key-view').hidden;     // several calls may be refused at once: ask once, keep what is typed
  showOnly('key-view');
  $('where').textContent = '';
  showError('key-error', message);
  if (asking) return;
  $('key-input').value = '';
  $('key-input').focus();
}

async function acceptKey(event) {
  event.preventDefault();
  const key = $('key-input').value.trim();
  try {
    await api('projects', { key });      // a call only the training key may make: checks it changes nothing
  } catch (err) {
    showError('key-error', err.status === 401 ? `${err.message.replace(/[.\s]*$/, '')}. Check the key and try again.` : err);
    return;
  }
  setTrainingKey(key);
  $('key-input').value = '';
  showError('key-error', '');
  route();
}

async function openProject(id) {
  if (!state.project || state.project.id !== id) {
    stopFollowing();
    resetGallery();
    resetPredictions();
    $('uploads').replaceChildren();      // the upload reports were another project's
    state.project = { id };
    state.tags = [];
    state.iterations = [];
    $('publish-name').value = '';
    await Promise.all([refreshProject(), refreshTags(), refreshIterations()]);
  }
  const p = state.project;
  $('project-title').textContent = p.name;
  $('where').textContent = `Project: ${p.name}`;
  $('project-summary').textContent = [p.description, p.multi_label ? 'multi-label' : 'single-label', p.backbone,
    `${p.size} px`].filter(Boolean).join(' · ');
  if (!$('publish-name').value) $('publish-name').value = p.name;
}

async function showView(view) {
  for (const v of VIEWS) $(`${v}-panel`).hidden = v !== view;
  for (const link of document.querySelectorAll('#tabs a')) {
    link.href = viewHref(link.dataset.view);
    if (link.dataset.view === view) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (view === 'images') {
    await refreshTags();
    await drawGallery();
  } else if (view === 'train') {
    await showTraining();
  } else if (view === 'iterations') {
    await refreshIterations();
    await drawIteration();
    drawPublished();
  } else if (view === 'predictions') {
    await refreshTags();
    await showPredictions();
  } else if (view === 'quicktest') {
    await refreshIterations();
  }
}

/** Draw what the hash names. */
async function route() {
  showError('notice', '');
  if (!trainingKey()) return askForKey();
  const match = location.hash.match(/^#\/projects\/(\d+)(?:\/(\w+))?/);
  try {
    if (!match) {
      showOnly('projects-view');
      $('where').textContent = '';
      state.project = null;
      await showProjects();
      return;
    }
    showOnly('project-view');
    await openProject(Number(match[1]));
    await showView(VIEWS.includes(match[2]) ? match[2] : 'images');
  } catch (err) {
    if (err.status === 404 && match) {          // a project deleted meanwhile (or a stale bookmark): list them
      state.project = null;
      location.hash = '#/';
    }
    if (err.status !== 401) showError('notice', err);
  }
}

async function start() {
  try {
    const health = await api('health', { key: '' });   // needs no key
    if (health.limits) state.limits = health.limits;
  } catch (err) {
    showError('notice', err);
  }
  initProjects();
  initUploads();
  initGallery();
  initTraining();
  initIterations();
  initPublish();
  initCompare();
  initPredictions();
  initQuickTest();
  $('key-form').addEventListener('submit', acceptKey);
  $('forget-key').addEventListener('click', () => {
    forgetTrainingKey();
    setPredictionKey('');
    state.project = null;
    askForKey();
  });
  $('train-again').addEventListener('click', (e) => { e.preventDefault(); location.hash = viewHref('train'); });
  whenUnauthorized((err) => {
    forgetTrainingKey();
    askForKey('The studio refused the key (it may have been reset with `learner studio keys --reset`): ' +
      `enter the current one. ${err ? err.message : ''}`);
  });
  on('tags', () => { drawTags(); drawFilter(); });
  on('images', () => drawGallery());
  on('iterations', () => { drawIterationChoices(); });
  on('project', () => drawPublished());
  window.addEventListener('hashchange', route);
  await route();
}

start();
