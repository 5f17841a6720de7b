/*
 * view.js - rendering: the result grid, the pager, the home / loading /
 * empty / error states, the detail dialog and notices.  Pure DOM building
 * with textContent (server data never goes through innerHTML); behaviour is
 * wired by app.js through the callbacks passed in.
 */
import { ICONS, fillIcons } from './icons.js';
import { thumbUrl, fileUrl } from './api.js';

export const $ = (sel) => document.querySelector(sel);

/* h('p', {class: 'x', onclick: f}, 'text', child) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

const icon = (name) => {
  const span = h('span', { class: 'icon', 'aria-hidden': 'true' });
  span.innerHTML = ICONS[name];  // constant SVG
  return span;
};

/* ------------------------------------------------------------ formatting */

export const basename = (path) => String(path).replace(/\/+$/, '').split('/').pop() || String(path);
export const dirname = (path) => {
  const s = String(path);
  const i = s.lastIndexOf('/');
  return i > 0 ? s.slice(0, i + 1) : '/';
};
export const formatScore = (score) => (typeof score === 'number' ? score.toFixed(3) : '');
const nf = new Intl.NumberFormat();

export function formatBytes(n) {
  if (!Number.isFinite(n)) return '';
  const units = ['bytes', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return i === 0 ? `${nf.format(n)} bytes` : `${n.toFixed(n < 10 ? 1 : 0)} ${units[i]}`;
}

export function formatDate(unix) {
  if (!unix) return '';
  return new Date(unix * 1000).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

/* ------------------------------------------------------------ states */

function stateBox(kind, iconName, title, text, ...actions) {
  return h('div', { class: `state state-${kind}`, role: kind === 'error' ? 'alert' : null },
           h('div', { class: 'state-icon' }, icon(iconName)),
           h('h2', { class: 'state-title' }, title),
           text ? h('p', { class: 'state-text' }, text) : null,
           actions.length ? h('div', { class: 'state-actions' }, actions) : null);
}

function setState(node) {
  $('#state').replaceChildren(...(node ? [node] : []));
}

function hideResults() {
  $('#grid').hidden = true;
  $('#grid').replaceChildren();
  $('#pager').hidden = true;
  $('#results-bar').hidden = true;
}

export function showHome(stats) {
  hideResults();
  setBusy(false);
  const n = stats ? stats.images : null;
  if (n === 0) {
    setState(stateBox('home', 'image', 'Your library is empty',
                      'Index a folder with "clipdex index DIR", or add images with the button above if this server accepts uploads.'));
    return;
  }
  const box = stateBox('home', 'logo', n ? `Search ${nf.format(n)} images` : 'Search your images',
                       'Describe what you are looking for, or find images similar to one you have.');
  box.append(h('ul', { class: 'hints' },
    h('li', {}, h('kbd', {}, 'Type'), ' a description: "a red bicycle", "sunset over water"'),
    h('li', {}, h('kbd', {}, 'Drop'), ' or ', h('kbd', {}, 'paste'), ' an image, or paste an image URL'),
    h('li', {}, h('kbd', {}, '/'), ' focuses the search box, ', h('kbd', {}, '← ↑ → ↓'), ' move through results, ',
      h('kbd', {}, 'Enter'), ' opens one, ', h('kbd', {}, 'Esc'), ' closes it')));
  if (stats && stats.model) box.append(h('p', { class: 'fine' }, `Model ${stats.model} · ${stats.dim}-dimensional embeddings`));
  setState(box);
}

export function setBusy(busy) {
  $('#results').setAttribute('aria-busy', busy ? 'true' : 'false');
  document.body.classList.toggle('is-loading', busy);
}

export function showLoading(count) {
  setBusy(true);
  setState(null);
  $('#results-bar').hidden = false;
  $('#summary').textContent = 'Searching…';
  $('#pager').hidden = true;
  const grid = $('#grid');
  grid.hidden = false;
  grid.classList.add('skeleton');
  grid.replaceChildren(...Array.from({ length: Math.min(count, 24) }, () =>
    h('li', { class: 'card', 'aria-hidden': 'true' }, h('div', { class: 'tile tile-skeleton' }, h('div', { class: 'thumb' })))));
}

export function showError(err, onRetry) {
  hideResults();
  setBusy(false);
  const title = err.status >= 500 ? 'The server failed to search'
              : err.status ? 'The server could not run this search' : 'The search did not reach the server';
  const box = stateBox('error', 'alert', title, err.message,
                       h('button', { type: 'button', class: 'button', onclick: onRetry }, icon('refresh'), 'Try again'));
  box.querySelector('.state-text').classList.add('error-message');
  if (err.status) box.querySelector('.state-title').after(h('p', { class: 'state-code' }, `HTTP ${err.status}${err.code ? ` · ${err.code}` : ''}`));
  setState(box);
}

export function showEmpty(hasFilters, onClearFilters) {
  hideResults();
  setBusy(false);
  setState(stateBox('empty', 'empty', 'No images match',
                    hasFilters ? 'Nothing passes the current filters. Widen the folder or the date range.'
                               : 'The library has no images to rank for this query.',
                    hasFilters ? h('button', { type: 'button', class: 'button', onclick: onClearFilters }, 'Clear filters') : null));
}

/* ------------------------------------------------------------ results */

/* results: the page's hits; ctx {page, pages, size, total, took, label,
 * onOpen(index), onPage(n)} */
export function showResults(results, ctx) {
  setBusy(false);
  setState(null);
  const first = (ctx.page - 1) * ctx.size + 1;
  const last = first + results.length - 1;
  $('#results-bar').hidden = false;
  const summary = $('#summary');
  summary.replaceChildren(
    h('strong', {}, `${nf.format(first)}–${nf.format(last)}`), ` of ${nf.format(ctx.total)} `,
    ctx.label ? h('span', { class: 'summary-query' }, ctx.label) : null,
    h('span', { class: 'summary-time' }, ` · ${ctx.took < 10 ? ctx.took.toFixed(1) : Math.round(ctx.took)} ms`));

  const grid = $('#grid');
  grid.classList.remove('skeleton');
  grid.hidden = false;
  grid.replaceChildren(...results.map((r, i) => {
    const name = basename(r.path);
    const img = h('img', {
      src: thumbUrl(r.id), srcset: `${thumbUrl(r.id)} 1x, ${thumbUrl(r.id, 512)} 2x`,
      alt: name, loading: 'lazy', decoding: 'async', width: 256, height: 256,
    });
    img.addEventListener('load', () => img.classList.add('loaded'));
    img.addEventListener('error', () => img.closest('.tile')?.classList.add('broken'));
    return h('li', { class: 'card' },
      h('button', {
        type: 'button', class: 'tile', tabindex: i === 0 ? 0 : -1, dataset: { index: i, id: r.id },
        'aria-label': `${name}, score ${formatScore(r.score)}, result ${first + i} of ${ctx.total}`,
        onclick: () => ctx.onOpen(i),
      },
      h('div', { class: 'thumb' }, img, h('span', { class: 'score-badge' }, formatScore(r.score))),
      h('div', { class: 'caption' }, h('span', { class: 'name' }, name),
        h('span', { class: 'score', title: 'Cosine similarity to the query' }, formatScore(r.score)))));
  }));
  renderPager(ctx.page, ctx.pages, ctx.onPage);
}

function renderPager(page, pages, onPage) {
  const nav = $('#pager');
  if (pages <= 1) { nav.hidden = true; nav.replaceChildren(); return; }
  const button = (label, target, attrs = {}) =>
    h('button', { type: 'button', class: 'page', onclick: () => onPage(target), ...attrs }, label);
  const items = [button([icon('left'), h('span', { class: 'page-word' }, 'Previous')], page - 1,
                        { disabled: page <= 1, 'aria-label': 'Previous page', class: 'page page-step' })];
  // 1 … p-1 p p+1 … N
  const shown = new Set([1, pages, page - 1, page, page + 1].filter((n) => n >= 1 && n <= pages));
  let prev = 0;
  for (const n of [...shown].sort((a, b) => a - b)) {
    if (n - prev > 1) items.push(h('span', { class: 'page-gap', 'aria-hidden': 'true' }, '…'));
    items.push(button(String(n), n, { 'aria-label': `Page ${n}`, 'aria-current': n === page ? 'page' : null }));
    prev = n;
  }
  items.push(button([h('span', { class: 'page-word' }, 'Next'), icon('right')], page + 1,
                    { disabled: page >= pages, 'aria-label': 'Next page', class: 'page page-step' }));
  nav.replaceChildren(...items);
  nav.hidden = false;
}

/* ------------------------------------------------------------ detail */

/* Source metadata from a feed (docs/fleet.md): credit line (owner, licence,
 * link to the source page), tags, description, place.  Links only to
 * http(s) addresses. */
const webUrl = (u) => (typeof u === 'string' && /^https?:\/\//i.test(u) ? u : null);

function sourceRows(r) {
  const s = r.source && typeof r.source === 'object' ? r.source : {};
  const page = webUrl(s.page);
  const site = s.kind === 'flickr' ? 'Flickr' : 'source';
  const owner = s.owner_name || s.owner;
  const credit = owner || s.license_name || page
    ? h('span', { class: 'attribution', id: 'detail-attribution' },
        owner ? ['Photo by ', h('strong', {}, owner)] : 'Photo',
        s.license_name ? [' · ', h('span', { class: 'license' }, s.license_name)] : null,
        page ? [' · ', h('a', { href: page, target: '_blank', rel: 'noopener noreferrer' }, `View on ${site}`)] : null)
    : '';
  const geo = s.geo && Number.isFinite(s.geo.lat) && Number.isFinite(s.geo.lon)
    ? `${s.geo.lat.toFixed(4)}, ${s.geo.lon.toFixed(4)}` : '';
  return [
    ['Credit', credit],
    ['Tags', Array.isArray(r.tags) ? r.tags.join(', ') : ''],
    ['Description', r.description || ''],
    ['Location', geo],
  ];
}

export function fillDetail(r, position) {
  const name = basename(r.path);
  $('#detail-title').textContent = r.title || name;
  const img = $('#detail-img');
  img.classList.remove('loaded');
  img.onload = () => img.classList.add('loaded');
  img.src = thumbUrl(r.id, 1024);
  img.alt = name;
  img.style.aspectRatio = r.width && r.height ? `${r.width} / ${r.height}` : '';
  // an image indexed from a URL has no stored original: link the URL itself
  const original = webUrl(r.path) || fileUrl(r.id);
  $('#detail-original-img').href = original;
  $('#detail-original').href = original;
  $('#detail-score').textContent = position
    ? `Score ${formatScore(r.score)} · result ${position.index} of ${position.total}` : '';
  const rows = [
    ...sourceRows(r),
    ['Path', h('span', { class: 'path' }, r.path)],
    ['Size', formatBytes(r.size)],
    ['Dimensions', r.width && r.height ? `${r.width} × ${r.height} px` : ''],
    ['Format', r.format ? String(r.format).toUpperCase() : ''],
    [r.taken ? 'Taken' : 'Modified', formatDate(r.taken || r.mtime)],
    ['Camera', r.camera || 'Unknown'],
    ['Added', formatDate(r.added)],
    ['Text in image', r.ocr || ''],
  ];
  $('#detail-meta').replaceChildren(...rows.filter(([, v]) => v).flatMap(([k, v]) =>
    [h('dt', {}, k), h('dd', { dataset: { field: k.toLowerCase() } }, v)]));
}

/* ------------------------------------------------------------ notices */

/* kind: 'info' | 'success' | 'error'.  Errors stay until dismissed. */
export function notify(kind, title, message, { timeout } = {}) {
  const close = h('button', { type: 'button', class: 'icon-button', 'aria-label': 'Dismiss' }, icon('x'));
  const note = h('div', { class: `notice notice-${kind}`, role: kind === 'error' ? 'alert' : 'status' },
    icon(kind === 'error' ? 'alert' : kind === 'success' ? 'check' : 'upload'),
    h('div', { class: 'notice-body' }, h('strong', {}, title), message ? h('p', {}, message) : null),
    close);
  close.addEventListener('click', () => note.remove());
  $('#notices').append(note);
  const ms = timeout ?? (kind === 'error' ? 0 : 6000);
  if (ms) setTimeout(() => note.remove(), ms);
  return note;
}

export { fillIcons };
