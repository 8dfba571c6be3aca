// Talking to the studio: the training key (sessionStorage only: it is sent as a header, never put in a URL),
// JSON calls, uploads with progress, authorised images, and a job's server-sent events read through fetch (an
// EventSource cannot send the key header).
'use strict';

const KEY_NAME = 'learner-studio.training-key';
const PREDICTION_KEY_NAME = 'learner-studio.prediction-key';

export const trainingKey = () => sessionStorage.getItem(KEY_NAME);
export const setTrainingKey = (key) => sessionStorage.setItem(KEY_NAME, key);
export const forgetTrainingKey = () => sessionStorage.removeItem(KEY_NAME);
export const predictionKey = () => sessionStorage.getItem(PREDICTION_KEY_NAME) || '';
export const setPredictionKey = (key) =>
  (key ? sessionStorage.setItem(PREDICTION_KEY_NAME, key) : sessionStorage.removeItem(PREDICTION_KEY_NAME));

// What each status means to a person, before the server's own words.
const STATUS_WORDS = {
  400: 'Bad request',
  401: 'Wrong or missing key',
  404: 'Not found',
  409: 'Refused',
  413: 'Too large',
  422: 'Cannot do that',
  500: 'Server error',
  503: 'The server is busy',
};

/** An answer that was not 2xx: `status`, the server's `detail`, and `message` in words. */
export class ApiError extends Error {
  constructor(status, detail, retryAfter = null) {
    const words = STATUS_WORDS[status] || (status ? `HTTP ${status}` : 'No answer');
    let message = `${status ? status + ' ' : ''}${words}: ${detail}`;
    if (status === 503 && retryAfter) message += ` (try again in ${retryAfter} s)`;
    super(message);
    this.status = status;
    this.detail = detail;
  }
}

/** The server's `detail` as text: FastAPI's validation errors are a list of {loc, msg}. */
export function detailText(body, fallback) {
  const detail = body && body.detail;
  if (typeof detail === 'string') return detail;
  if (Array.isArray(detail)) {
    const where = (d) => (d.loc ? d.loc.filter((p) => p !== 'body').join('.') + ': ' : '');
    return detail.map((d) => where(d) + (d.msg || '')).join('; ');
  }
  return fallback || 'the request failed';
}

// Called with every 401, so the page can ask for the key again (it may have been reset on the server).
let onUnauthorized = () => {};
export const whenUnauthorized = (fn) => { onUnauthorized = fn; };

function headers(extra = {}) {
  const key = trainingKey();
  return key ? { 'Training-Key': key, ...extra } : extra;
}

async function failure(response, storedKey = true) {
  const body = await response.json().catch(() => null);
  const error = new ApiError(response.status, detailText(body, response.statusText),
    response.headers.get('Retry-After'));
  error.body = body;
  if (response.status === 401 && storedKey) onUnauthorized(error);   // not for a key being tried out
  return error;
}

/**
 * One call. `json` is sent as the body; `query` becomes the query string (arrays repeat the name).
 * Returns the parsed JSON (null for 204); throws ApiError (with the server's words) otherwise.
 */
export async function api(path, { method = 'GET', json, query, body, key } = {}) {
  const url = withQuery(path, query);
  const extra = json === undefined ? {} : { 'Content-Type': 'application/json' };
  const sent = key === undefined ? headers(extra) : { 'Training-Key': key, ...extra };
  let response;
  try {
    response = await fetch(url, { method, headers: sent, body: json === undefined ? body : JSON.stringify(json) });
  } catch (err) {
    throw new ApiError(0, `cannot reach the studio (${err.message}): is \`learner studio\` still running?`);
  }
  if (!response.ok) throw await failure(response, key === undefined);
  if (response.status === 204) return null;
  return response.json();
}

export function withQuery(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value === undefined || value === null) continue;
    for (const v of Array.isArray(value) ? value : [value]) params.append(name, String(v));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

/**
 * POST a FormData with upload progress (XMLHttpRequest: fetch reports none). `onProgress(fraction)`.
 * Resolves to {status, body}: the caller reads per-file reports even from a 422 (every file refused).
 */
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open('POST', path);
    const key = trainingKey();
    if (key) request.setRequestHeader('Training-Key', key);
    request.responseType = 'json';
    request.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    request.onload = () => {
      const body = request.response;
      if (request.status >= 200 && request.status < 300) resolve({ status: request.status, body });
      else if (request.status === 422 && body && Array.isArray(body.results)) resolve({ status: 422, body });
      else {
        const error = new ApiError(request.status, detailText(body, request.statusText),
          request.getResponseHeader('Retry-After'));
        if (request.status === 401) onUnauthorized(error);
        reject(error);
      }
    };
    request.onerror = () => reject(new ApiError(0, 'the connection broke during the upload: is the studio running?'));
    request.send(form);
  });
}

/** An object URL of an image the key protects (an <img src> cannot send the header); revoke it when done. */
export async function imageUrl(path) {
  const response = await fetch(path, { headers: headers() });
  if (!response.ok) throw await failure(response);
  return URL.createObjectURL(await response.blob());
}

/** Download a protected file under `name`. */
export async function download(path, name) {
  const url = await imageUrl(path);
  const link = Object.assign(document.createElement('a'), { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

/**
 * Follow a server-sent event stream: `onEvent(data)` for each `data:` (parsed JSON) until the stream ends or
 * `signal` aborts. Resolves when it ends; rejects with ApiError when it cannot start.
 */
export async function follow(path, onEvent, signal) {
  const unreachable = (err) => {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, `lost the studio (${err.message}): trying again`);
  };
  const response = await fetch(path, { headers: headers({ Accept: 'text/event-stream' }), signal }).catch(unreachable);
  if (!response.ok) throw await failure(response);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffered = '';
  for (;;) {
    const { value, done } = await reader.read().catch(unreachable);
    if (done) return;
    buffered += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffered.indexOf('\n\n')) >= 0) {
      const message = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      const data = message.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n');
      if (data) onEvent(JSON.parse(data));
    }
  }
}
