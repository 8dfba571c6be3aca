// The projects list: open, create (name, description, single/multi-label, backbone, size), delete after a
// confirmation.
'use strict';

import { api } from './api.js';
import { $, confirmDialog, el, showError } from './dom.js';

let backbonesLoaded = false;

function describe(p) {
  const kind = p.multi_label ? 'multi-label' : 'single-label';
  return `${kind} · ${p.backbone} · ${p.size} px`;
}

function projectCard(project) {
  const open = el('a', { href: `#/projects/${project.id}/images`, textContent: project.name, className: 'title' });
  const remove = el('button', {
    type: 'button', className: 'danger', textContent: 'Delete',
    attrs: { 'aria-label': `Delete the project ${project.name}` },
    onclick: () => deleteProject(project),
  });
  return el('li', { className: 'card', dataset: { projectId: project.id } },
    open,
    project.description ? el('p', { textContent: project.description }) : null,
    el('p', { className: 'muted small', textContent: describe(project) }),
    el('div', { className: 'row' }, remove));
}

async function deleteProject(project) {
  const sure = await confirmDialog(`Delete the project "${project.name}" with all its images, iterations and ` +
    'predictions? This cannot be undone.', 'Delete the project');
  if (!sure) return;
  try {
    await api(`projects/${project.id}`, { method: 'DELETE' });
    showError('project-error', '');
  } catch (err) {
    showError('project-error', err);
  }
  await showProjects();
}

async function loadBackbones() {
  if (backbonesLoaded) return;
  const found = await api('backbones');
  const available = found.filter((b) => b.available);
  $('project-backbone').replaceChildren(...available.map((b) => el('option', { value: b.name, textContent: b.name })));
  const missing = found.length - available.length;
  $('backbone-note').textContent = missing
    ? `${missing} other registered backbones need their pretrained weights in TORCH_HOME/hub/checkpoints first.`
    : '';
  backbonesLoaded = true;
}

/** Draw the projects view (the list and the creation form). */
export async function showProjects() {
  try {
    const [projects] = await Promise.all([api('projects'), loadBackbones()]);
    $('project-list').replaceChildren(...projects.map(projectCard));
    $('no-projects').hidden = projects.length > 0;
  } catch (err) {
    showError('project-error', err);
  }
}

async function createProject(event) {
  event.preventDefault();
  showError('project-error', '');
  const body = {
    name: $('project-name').value.trim(),
    description: $('project-description').value.trim(),
    multi_label: $('type-multi').checked,
    backbone: $('project-backbone').value || undefined,
    size: Number($('project-size').value),
  };
  try {
    const project = await api('projects', { method: 'POST', json: body });
    $('project-form').reset();
    location.hash = `#/projects/${project.id}/images`;
  } catch (err) {
    showError('project-error', err);
  }
}

export function initProjects() {
  $('project-form').addEventListener('submit', createProject);
}
