// Quick test: an image against an iteration (nothing stored), its tags drawn as bars.
'use strict';

import { api } from './api.js';
import { $, bars, dropZone, showError } from './dom.js';
import { projectPath } from './state.js';

let previewUrl = null;

async function test(files) {
  const file = files[0];
  const iterationId = $('quicktest-iteration').value;
  showError('quicktest-error', '');
  if (!iterationId) return showError('quicktest-error', 'Train an iteration first: there is nothing to test yet.');
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = URL.createObjectURL(file);
  $('quicktest-preview').src = previewUrl;
  $('quicktest-preview').alt = `the image tested: ${file.name}`;
  $('quicktest-result').hidden = false;
  $('quicktest-bars').replaceChildren();
  $('quicktest-result').dataset.state = 'waiting';
  const form = new FormData();
  form.append('file', file, file.name);
  try {
    const answer = await api(projectPath('/quicktest'),
      { method: 'POST', body: form, query: { iteration_id: iterationId } });
    bars($('quicktest-bars'), answer.predictions);
    $('quicktest-result').dataset.state = 'done';
  } catch (err) {
    $('quicktest-result').dataset.state = 'failed';
    $('quicktest-result').hidden = true;     // a refused file: no broken preview, the reason says it all
    showError('quicktest-error', err);
  }
}

export function initQuickTest() {
  dropZone($('quicktest-drop'), $('quicktest-file'), test);
}
