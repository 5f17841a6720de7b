/*
 * api.js - the clipdex HTTP API as the page uses it (docs/server.md).
 *
 * Every failure becomes an ApiError carrying the HTTP status, the server's
 * error code and its message ({"error": {"code", "message"}}), so the page
 * can show exactly what the server said.  Aborted requests rethrow the
 * AbortError untouched (a newer search replaced them; nothing to show).
 * The write token lives in sessionStorage: this tab only, gone when it closes.
 */

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

const TOKEN_KEY = 'clipdex.token';

export function getToken() {
  try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
}

export function setToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch { /* storage disabled: the token is asked again next time */ }
}

async function request(path, options = {}) {
  let res;
  try {
    res = await fetch(path, options);
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, 'network', `Cannot reach the clipdex server (${err.message}).`);
  }
  const type = res.headers.get('content-type') || '';
  let body = null;
  if (type.includes('json')) {
    try { body = await res.json(); } catch { body = null; }
  }
  if (!res.ok) {
    const e = body && body.error;
    throw new ApiError(res.status, (e && e.code) || `http_${res.status}`,
                       (e && e.message) || `The server answered ${res.status} ${res.statusText}`.trim());
  }
  if (body === null) throw new ApiError(res.status, 'bad_response', 'The server sent a response that is not JSON.');
  return body;
}

/* One search.  query is {kind: 'text', text} | {kind: 'url', url} |
 * {kind: 'id', id} | {kind: 'file', file} | {kind: 'parts', parts} (a
 * combined query: [{text | image_id, weight}]); opts {k, offset, folder,
 * after, before, mode, tag, minScore} with dates as YYYY-MM-DD (the "to"
 * day is included). */
export function search(query, opts, signal) {
  const fields = { k: String(opts.k), offset: String(opts.offset) };
  if (opts.folder) fields.path_prefix = opts.folder;
  if (opts.after) fields.after = opts.after;
  if (opts.before) fields.before = `${opts.before}T23:59:59Z`;
  if (opts.mode) fields.mode = opts.mode;
  if (opts.tag) fields.tag = opts.tag;
  if (opts.minScore !== undefined && opts.minScore !== null) fields.min_score = String(opts.minScore);
  if (query.kind === 'parts') return searchParts(query.parts, fields, signal);
  if (query.kind === 'file') {
    const form = new FormData();
    form.append('image', query.file, query.file.name || 'image');
    for (const [key, value] of Object.entries(fields)) form.append(key, value);
    return request('/api/search', { method: 'POST', body: form, signal });
  }
  const params = new URLSearchParams();
  if (query.kind === 'text') params.set('q', query.text);
  else if (query.kind === 'url') params.set('image_url', query.url);
  else if (query.kind === 'id') params.set('image_id', String(query.id));
  for (const [key, value] of Object.entries(fields)) params.set(key, value);
  return request(`/api/search?${params}`, { signal });
}

/* A combined query as JSON (docs/search.md): the same options, filters
 * in "filters". */
function searchParts(parts, fields, signal) {
  const body = { parts, k: Number(fields.k), offset: Number(fields.offset) };
  if (fields.mode) body.mode = fields.mode;
  if (fields.min_score !== undefined) body.min_score = Number(fields.min_score);
  const filters = {};
  for (const key of ['path_prefix', 'after', 'before', 'tag']) if (fields[key]) filters[key] = fields[key];
  if (Object.keys(filters).length) body.filters = filters;
  return request('/api/search', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body), signal,
  });
}

export const image = (id) => request(`/api/images/${encodeURIComponent(id)}`);
export const stats = () => request('/api/stats');

export const thumbUrl = (id, size) => `/api/images/${encodeURIComponent(id)}/thumb${size ? `?size=${size}` : ''}`;
export const fileUrl = (id) => `/api/images/${encodeURIComponent(id)}/file`;

/* Add one image to the library (needs the token when the server has one). */
export function upload(file, token) {
  const form = new FormData();
  form.append('image', file, file.name || 'image');
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  return request('/api/images', { method: 'POST', body: form, headers });
}
