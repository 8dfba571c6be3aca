// The quick-test page: send an image to /predict and draw the answer; show the validation set's precision and
// recall at the slider's threshold from /model/thresholds (counts stored at export). No build step, no libraries.
'use strict';

const $ = (id) => document.getElementById(id);
const state = { model: null, table: null, predictions: null };
const SHOWN = 5;  // bars drawn for the most likely classes

const percent = (v) => (v === null || v === undefined || Number.isNaN(v) ? '–' : (100 * v).toFixed(1) + '%');
const threshold = () => Number($('threshold').value) / 100;

function showError(message) {
  $('error').textContent = message;
  $('error').hidden = !message;
}

function detailText(body, response) {
  const detail = body && body.detail;
  if (typeof detail === 'string') return detail;
  if (Array.isArray(detail)) return detail.map((d) => d.msg || JSON.stringify(d)).join('; ');
  return response.statusText || 'request failed';
}

async function loadModel() {
  try {
    const response = await fetch('model');
    state.model = await response.json();
  } catch (err) {
    $('model-summary').textContent = 'Cannot reach the server: ' + err;
    return;
  }
  const m = state.model;
  const kind = m.is_multi ? 'multi-label' : 'single-label';
  $('model-summary').textContent = `${m.arch} · ${m.classes.length} classes (${kind}) · ${m.sz} px input · ` +
    `exported ${m.exported_at || 'at an unknown time'}`;
  $('threshold').value = Math.round(100 * (m.default_threshold ?? 0.5));
  $('threshold-help').textContent = m.is_multi
    ? 'A class counts as predicted when its own probability is at or over the threshold.'
    : 'An image counts as predicted (as its most likely class) only when that probability is at or over the ' +
      'threshold; below it the model abstains. AP does not depend on the threshold.';
  buildTable();
  const response = await fetch('model/thresholds');
  const body = await response.json().catch(() => ({}));
  if (response.ok) {
    state.table = body;
  } else {
    $('metrics-note').textContent = detailText(body, response);
    $('metrics-note').hidden = false;
  }
  render();
}

function buildTable() {
  const tbody = document.querySelector('#per-class tbody');
  tbody.replaceChildren();
  const report = state.model.validation;
  state.model.classes.forEach((name, j) => {
    const row = document.createElement('tr');
    row.dataset.class = name;
    const ap = report ? report.per_class[j].average_precision : null;
    const n = report ? report.per_class[j].n : '–';
    for (const [cls, text] of [['class', name], ['precision', '–'], ['recall', '–'], ['ap', percent(ap)], ['n', n]]) {
      const cell = document.createElement('td');
      cell.className = cls;
      cell.textContent = text;
      row.append(cell);
    }
    tbody.append(row);
  });
  $('map').textContent = percent(report ? report.mean_average_precision : null);
}

function nearestIndex(thresholds, t) {
  let best = 0;
  thresholds.forEach((v, k) => { if (Math.abs(v - t) < Math.abs(thresholds[best] - t)) best = k; });
  return best;
}

function render() {
  $('threshold-value').textContent = Math.round(threshold() * 100) + '%';
  if (state.table) {
    const k = nearestIndex(state.table.thresholds, threshold());
    $('overall-precision').textContent = percent(state.table.overall.precision[k]);
    $('overall-recall').textContent = percent(state.table.overall.recall[k]);
    document.querySelectorAll('#per-class tbody tr').forEach((row, j) => {
      row.querySelector('.precision').textContent = percent(state.table.precision[k][j]);
      row.querySelector('.recall').textContent = percent(state.table.recall[k][j]);
    });
  }
  renderPredictions();
}

function renderPredictions() {
  const list = $('predictions');
  list.replaceChildren();
  if (!state.predictions || !state.predictions.length) return;
  const top = state.predictions[0];
  $('top-class').textContent = top.class;
  $('top-probability').textContent = percent(top.probability);
  for (const p of state.predictions.slice(0, SHOWN)) {
    const item = document.createElement('li');
    item.dataset.class = p.class;
    if (p.probability >= threshold()) item.classList.add('over');
    const name = Object.assign(document.createElement('span'), { className: 'name', textContent: p.class, title: p.class });
    const track = Object.assign(document.createElement('span'), { className: 'track' });
    const fill = Object.assign(document.createElement('span'), { className: 'fill' });
    fill.style.display = 'block';
    fill.style.width = (100 * p.probability).toFixed(1) + '%';
    track.append(fill);
    const value = Object.assign(document.createElement('span'), { className: 'pct', textContent: percent(p.probability) });
    item.append(name, track, value);
    list.append(item);
  }
}

async function send(file) {
  if (!file) return;
  showError('');
  $('preview').src = URL.createObjectURL(file);
  $('result').hidden = false;
  $('top-class').textContent = '…';
  $('top-probability').textContent = '';
  state.predictions = null;
  renderPredictions();
  const form = new FormData();
  form.append('file', file, file.name);
  let response, body;
  try {
    response = await fetch('predict', { method: 'POST', body: form });
    body = await response.json().catch(() => ({}));
  } catch (err) {
    showError('Cannot reach the server: ' + err);
    return;
  }
  if (!response.ok) {
    $('top-class').textContent = '–';
    showError(`${response.status}: ${detailText(body, response)}`);
    return;
  }
  state.predictions = body.predictions;
  renderPredictions();
}

const drop = $('drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  send(e.dataTransfer.files[0]);
});
$('file').addEventListener('change', (e) => send(e.target.files[0]));
$('threshold').addEventListener('input', render);
loadModel();
