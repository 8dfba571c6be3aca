// Publishing: the chosen iteration answers the project's prediction URL under a name; the page shows that URL and
// a curl line a client can copy (with the prediction key when the person pastes it: the studio keeps only its hash,
// so it cannot show it), unpublish, and the iteration's export file.
'use strict';

import { api, download, predictionKey, setPredictionKey } from './api.js';
import { $, showError } from './dom.js';
import { drawIteration, selectedIteration } from './iterations.js';
import { projectPath, refreshIterations, refreshProject, state } from './state.js';

export const predictionUrl = () => new URL(projectPath('/predict'), location.href).href;

/** The curl line: a single-quoted key so that no shell expands it; a placeholder when the key was not given. */
export function curlLine() {
  const key = predictionKey();
  const header = key ? `'Prediction-Key: ${key}'` : '"Prediction-Key: $PREDICTION_KEY"';
  return `curl -H ${header} -F file=@image.jpg ${predictionUrl()}`;
}

/** Draw what is published (any iteration of the project) and the controls for the selected one. */
export function drawPublished() {
  const published = state.project && state.project.published;
  const it = selectedIteration();
  $('published').hidden = !published;
  $('unpublish').disabled = !published;
  if (!published) {
    $('publish-status').textContent = 'Nothing is published: the prediction URL answers 404 until you publish an ' +
      'iteration.';
    return;
  }
  const which = state.iterations.find((i) => i.id === published.iteration_id);
  const number = which ? which.number : '?';
  $('publish-status').textContent = it && it.id === published.iteration_id
    ? `This iteration is published as "${published.name}".`
    : `Iteration ${number} is published as "${published.name}".`;
  $('prediction-url').textContent = predictionUrl();
  $('curl-line').textContent = curlLine();
  if ($('prediction-key').value !== predictionKey()) $('prediction-key').value = predictionKey();
  if (!$('publish-name').value) $('publish-name').value = published.name;
}

async function publish(event) {
  event.preventDefault();
  const it = selectedIteration();
  if (!it) return;
  showError('publish-error', '');
  $('publish-status').textContent = `Loading iteration ${it.number} to publish it…`;
  try {
    const name = $('publish-name').value.trim();
    await api(projectPath(`/iterations/${it.id}/publish`), { method: 'POST', json: { name } });
    await Promise.all([refreshProject(), refreshIterations()]);
    await drawIteration();     // its summary names what is published
  } catch (err) {
    showError('publish-error', err);
  }
  drawPublished();
}

async function unpublish() {
  showError('publish-error', '');
  try {
    await api(projectPath('/publish'), { method: 'DELETE' });
    await Promise.all([refreshProject(), refreshIterations()]);
    await drawIteration();
  } catch (err) {
    showError('publish-error', err);
  }
  drawPublished();
}

async function copyCurl() {
  const text = curlLine();
  try {
    await navigator.clipboard.writeText(text);
    $('copy-status').textContent = 'Copied.';
  } catch (err) {
    // no clipboard permission (an http page on another host): select the line so the person can copy it
    const range = document.createRange();
    range.selectNodeContents($('curl-line'));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    $('copy-status').textContent = 'Selected: press Ctrl+C (or Cmd+C) to copy.';
  }
}

async function downloadExport() {
  const it = selectedIteration();
  if (!it) return;
  showError('publish-error', '');
  try {
    await download(projectPath(`/iterations/${it.id}/export`), `${state.project.name}-iteration${it.number}.pth`);
  } catch (err) {
    showError('publish-error', err);
  }
}

export function initPublish() {
  if (!$('publish-name').value && state.project) $('publish-name').value = state.project.name;
  $('publish-form').addEventListener('submit', publish);
  $('unpublish').addEventListener('click', unpublish);
  $('copy-curl').addEventListener('click', copyCurl);
  $('download-export').addEventListener('click', downloadExport);
  $('prediction-key-form').addEventListener('submit', (e) => e.preventDefault());
  $('prediction-key').addEventListener('input', () => {
    setPredictionKey($('prediction-key').value.trim());
    $('curl-line').textContent = curlLine();
  });
}
