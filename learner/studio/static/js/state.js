// What the sections share: the open project, its tags and iterations, the server's limits, and a bus on which a
// section says what it changed ("tags", "images", "iterations", "published") so the others redraw.
'use strict';

import { api } from './api.js';

export const state = {
  limits: { max_upload_bytes: 200 * 1024 * 1024, max_files: 256 },
  project: null,      // the open project (GET /projects/{id})
  tags: [],           // its tags with image counts
  iterations: [],     // its iterations, oldest first
};

export const bus = new EventTarget();
export const announce = (what, detail) => bus.dispatchEvent(new CustomEvent(what, { detail }));
export const on = (what, fn) => bus.addEventListener(what, (e) => fn(e.detail));

export const projectPath = (suffix = '') => `projects/${state.project.id}${suffix}`;

/** Where a section of the open project lives (the hash route). */
export const viewHref = (view, projectId = state.project && state.project.id) => `#/projects/${projectId}/${view}`;

export async function refreshProject() {
  state.project = await api(projectPath());
  announce('project', state.project);
  return state.project;
}

export async function refreshTags() {
  state.tags = await api(projectPath('/tags'));
  announce('tags', state.tags);
  return state.tags;
}

export async function refreshIterations() {
  state.iterations = await api(projectPath('/iterations'));
  announce('iterations', state.iterations);
  return state.iterations;
}

export const tagName = (id) => (state.tags.find((t) => t.id === id) || {}).name;
