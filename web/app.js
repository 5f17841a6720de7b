/*
 * app.js - the clipdex web interface's behaviour (docs/web.md).
 *
 * State lives in the URL: ?q= (text or an image URL), ?similar=ID, page,
 * n (page size), folder, after, before; and (search modes, docs/search.md)
 * mode, tag, and add= text parts of a combined query ("-text" pushes away).
 * The relevance threshold is remembered in localStorage, not in links.  Every change goes through
 * navigate(), which writes the URL (pushState; replaceState while the user
 * keeps typing, so back steps over whole searches, not keystrokes) and then
 * apply(), which syncs the controls and runs the search.  popstate calls
 * apply() on the restored URL, so links can be shared and back/forward work.
 *
 * Image files (dropped, pasted, picked) cannot live in a URL: they are kept
 * in memory under a key stored in history.state, the URL only shows
 * ?file=NAME.  Only the newest search may paint (sequence number + abort).
 */
import * as api from './api.js';
import * as view from './view.js';

const { $ } = view;

const PAGE_SIZES = [16, 32, 48, 96];
const DEFAULT_SIZE = 16;
const OFFSET_MAX = 9000;       // the server's largest offset
const DEBOUNCE_MS = 250;
const FOLDERS_MAX = 200;
const DATE_RE = /^\d{4}-\d{2}-\d{2}$/;
const URL_RE = /^https?:\/\/\S+$/i;
const MODES = ['semantic', 'keyword', 'hybrid'];
const ADDS_MAX = 8;            // text parts of a combined query
const THRESHOLD_KEY = 'clipdex.threshold';

const files = new Map();       // key -> {file, url}: image queries of this tab
let fileSeq = 0;
let stats = null;
let current = null;            // the params on screen
let shownKey = null;           // searchKey() of what the grid shows (null: nothing good)
let results = [];
let total = 0;
let searchSeq = 0;
let controller = null;
let typingEntry = false;       // the current history entry came from typing
let focusGridAfterRender = false;
let detailIndex = -1;
const folders = new Set();

const input = $('#q');

/* ------------------------------------------------------------ URL state */

function readLocation() {
  const sp = new URLSearchParams(location.search);
  const positive = (v, d) => (/^\d+$/.test(v || '') && Number(v) > 0 ? Number(v) : d);
  const date = (v) => (DATE_RE.test(v || '') ? v : '');
  const size = positive(sp.get('n'), DEFAULT_SIZE);
  const key = history.state && history.state.fileKey;
  return {
    q: sp.get('q') || '',
    similar: /^\d+$/.test(sp.get('similar') || '') ? sp.get('similar') : '',
    fileKey: key && files.has(key) ? key : '',
    fileName: sp.get('file') || '',
    page: positive(sp.get('page'), 1),
    size: PAGE_SIZES.includes(size) ? size : DEFAULT_SIZE,
    folder: sp.get('folder') || '',
    after: date(sp.get('after')),
    before: date(sp.get('before')),
    mode: MODES.includes(sp.get('mode')) ? sp.get('mode') : '',
    tag: (sp.get('tag') || '').trim(),
    adds: sp.getAll('add').map((a) => a.trim()).filter(Boolean).slice(0, ADDS_MAX),
  };
}

function toQueryString(p) {
  const sp = new URLSearchParams();
  if (p.fileKey) sp.set('file', p.fileName || 'image');
  else if (p.similar) sp.set('similar', p.similar);
  else if (p.q.trim() && !p.adds.length) sp.set('q', p.q.trim());
  for (const a of p.adds) sp.append('add', a);
  if (p.mode) sp.set('mode', p.mode);
  if (p.tag) sp.set('tag', p.tag);
  if (p.folder) sp.set('folder', p.folder);
  if (p.after) sp.set('after', p.after);
  if (p.before) sp.set('before', p.before);
  if (p.size !== DEFAULT_SIZE) sp.set('n', String(p.size));
  if (p.page > 1) sp.set('page', String(p.page));
  const s = sp.toString();
  return s ? `?${s}` : '';
}

const searchKey = (p) => `${toQueryString(p)}#${p.fileKey}`;
const hasFilters = (p) => Boolean(p.folder || p.after || p.before || p.tag || threshold() > 0);

/* The query a params object asks for, or null (home page). */
function queryOf(p) {
  if (p.adds.length && !p.fileKey) return { kind: 'parts', parts: partsOf(p) };
  if (p.fileKey) return { kind: 'file', file: files.get(p.fileKey).file };
  if (p.similar) return { kind: 'id', id: p.similar };
  const text = p.q.trim();
  if (!text) return null;
  if (URL_RE.test(text)) {
    // A link to one of our own images is a "find similar" by id (the
    // server would rightly refuse to fetch its own loopback address).
    try {
      const u = new URL(text);
      const m = u.pathname.match(/^\/api\/images\/(\d+)(\/|$)/);
      if (u.origin === location.origin && m) return { kind: 'id', id: m[1] };
    } catch { /* not a URL after all: search it as text */ }
    return { kind: 'url', url: text };
  }
  return { kind: 'text', text };
}

function labelOf(query, p) {
  switch (query.kind) {
    case 'text': return `for “${query.text}”`;
    case 'url': return 'similar to the image at that URL';
    case 'id': return `similar to image #${query.id}`;
    case 'parts': return partsLabel(p);
    default: return `similar to ${p.fileName || 'your image'}`;
  }
}

/* Change the state: write the URL, then apply it.  typing: the change
 * comes from typing (the history entry is replaced while typing goes on);
 * force: search again even if the same search is on screen. */
function navigate(changes, { replace = false, typing = false, force = false } = {}) {
  const p = { ...(current || readLocation()), ...changes };
  const qs = toQueryString(p);
  const fileKey = (history.state && history.state.fileKey) || '';
  if (qs !== location.search || fileKey !== p.fileKey) {
    const state = p.fileKey ? { fileKey: p.fileKey } : {};
    const url = `${location.pathname}${qs}`;
    if (replace || (typing && typingEntry)) history.replaceState(state, '', url);
    else history.pushState(state, '', url);
  }
  typingEntry = typing;
  apply(p, { typing, force });
}

function apply(p, { typing = false, force = false } = {}) {
  current = p;
  syncControls(p, typing);
  const query = queryOf(p);
  document.title = query ? `${query.kind === 'text' ? query.text : query.kind === 'parts' ? 'Combined search' : 'Similar images'} — clipdex` : 'clipdex';
  if (!query) {
    if (controller) controller.abort();
    searchSeq++;
    shownKey = null;
    results = [];
    view.showHome(stats);
    if (p.fileName && !p.fileKey)
      view.notify('info', 'That search used an image from your computer',
                  'Images are not part of the link: drop, paste or pick it again to repeat the search.');
    return;
  }
  if (!force && shownKey === searchKey(p)) return;
  runSearch(p, query);
}

/* ------------------------------------------------------------ searching */

async function runSearch(p, query) {
  if (controller) controller.abort();
  const ctl = new AbortController();
  controller = ctl;
  const seq = ++searchSeq;
  shownKey = null;
  const maxPage = Math.floor(OFFSET_MAX / p.size) + 1;
  const page = Math.min(p.page, maxPage);
  view.showLoading(p.size);
  try {
    const minScore = p.mode !== 'keyword' && threshold() > 0 ? threshold() / 100 : undefined;
    const res = await api.search(query, {
      k: p.size, offset: (page - 1) * p.size, folder: p.folder, after: p.after, before: p.before,
      mode: p.mode, tag: p.tag, minScore,
    }, ctl.signal);
    if (seq !== searchSeq) return;
    results = Array.isArray(res.results) ? res.results : [];
    total = Number(res.total) || 0;
    const pages = Math.max(1, Math.min(Math.ceil(total / p.size), maxPage));
    if (!results.length && total > 0 && page > 1) {  // past the end: show the last page
      navigate({ page: pages }, { replace: true });
      return;
    }
    shownKey = searchKey(p);
    if (!results.length) {
      view.showEmpty(hasFilters(p), clearFilters);
      return;
    }
    rememberFolders(results);
    view.showResults(results, {
      page, pages, size: p.size, total, took: Number(res.took_ms) || 0,
      label: `${labelOf(query, p)}${minScore !== undefined ? ` · score ≥ ${minScore.toFixed(2)}` : ''}${res.mode ? ` · ${res.mode}` : ''}`,
      onOpen: openDetail,
      onPage: (n) => {
        focusGridAfterRender = true;
        navigate({ page: n });
        window.scrollTo({ top: 0 });
      },
    });
    if (focusGridAfterRender) $('#grid .tile')?.focus();
  } catch (err) {
    if (err.name === 'AbortError' || seq !== searchSeq) return;
    view.showError(err, () => apply(current, { force: true }));
  } finally {
    if (seq === searchSeq) focusGridAfterRender = false;
  }
}

function rememberFolders(list) {
  for (const r of list) {
    if (folders.size >= FOLDERS_MAX) break;
    if (typeof r.path === 'string' && r.path.startsWith('/')) folders.add(view.dirname(r.path));
  }
  $('#folder-list').replaceChildren(...[...folders].sort().map((f) => view.h('option', { value: f })));
}

/* ------------------------------------------------------------ controls */

function syncControls(p, typing) {
  const text = p.fileKey || p.similar ? '' : p.q;
  if (!(typing && document.activeElement === input) && input.value.trim() !== text.trim()) input.value = text;

  const chip = $('#query-chip');
  const chipImg = chip.querySelector('img');
  const chipLabel = chip.querySelector('.query-chip-label');
  if (p.fileKey) {
    const f = files.get(p.fileKey);
    chipImg.src = f.url;
    chipLabel.textContent = p.fileName || 'your image';
    chip.hidden = false;
  } else if (p.similar) {
    chipImg.src = api.thumbUrl(p.similar, 64);
    chipLabel.textContent = `image #${p.similar}`;
    chip.hidden = false;
    const id = p.similar;
    api.image(id).then((rec) => {
      if (current && current.similar === id) chipLabel.textContent = view.basename(rec.path);
    }, () => { /* the search itself reports a missing image */ });
  } else {
    chip.hidden = true;
    chipImg.removeAttribute('src');
  }
  renderPartChips(p);
  const combining = combinable(p);
  input.placeholder = combining ? 'Add words (Enter), or -words to avoid'
                    : chip.hidden ? 'Search your images…' : 'Similar images · type to search by text';
  document.body.classList.toggle('has-chip', !chip.hidden || p.adds.length > 0);
  $('#mode').value = p.mode;
  if ($('#f-tag').value !== p.tag && !(typing && document.activeElement === $('#f-tag'))) $('#f-tag').value = p.tag;
  syncThreshold();

  for (const [id, value] of [['#f-folder', p.folder], ['#f-after', p.after], ['#f-before', p.before]]) {
    const el = $(id);
    if (el.value !== value && !(typing && document.activeElement === el)) el.value = value;
  }
  const n = [p.folder, p.after, p.before, p.tag].filter(Boolean).length;
  $('#filters-count').hidden = n === 0;
  $('#filters-count').textContent = String(n);
  $('#page-size').value = String(p.size);
}

const textChanges = () => ({ q: input.value, similar: '', fileKey: '', fileName: '', adds: [], page: 1 });
let debounce = 0;

input.addEventListener('input', () => {
  clearTimeout(debounce);
  if (current && combinable(current)) return;   // words become a part on Enter
  debounce = setTimeout(() => navigate(textChanges(), { typing: true }), DEBOUNCE_MS);
});

$('#search-form').addEventListener('submit', (e) => {
  e.preventDefault();
  clearTimeout(debounce);
  const text = input.value.trim();
  if (text && current && combinable(current)) {
    input.value = '';
    navigate({ adds: [...current.adds, text].slice(0, ADDS_MAX), q: '', page: 1 });
    return;
  }
  const keepImage = !text && current && (current.fileKey || current.similar || current.adds.length);
  navigate(keepImage ? {} : textChanges(), { force: true });
});

$('.query-chip-clear').addEventListener('click', () => {
  navigate({ q: '', similar: '', fileKey: '', fileName: '', page: 1 });
  input.focus();
});

/* ------------------------------------------------------------ combined queries, modes, threshold
 * (docs/search.md) A "similar" search can take text parts: words typed
 * next to the image chip are added as chips (weight 1, or -1 when they start
 * with "-"); every chip can be removed.  The threshold slider sends
 * min_score (0..1) with every non-keyword search. */

const combinable = (p) => Boolean(p.similar || p.adds.length) && !p.fileKey;

function partsOf(p) {
  const parts = p.similar ? [{ image_id: Number(p.similar), weight: 1 }] : [];
  for (const a of p.adds) {
    const neg = a.startsWith('-') && a.length > 1;
    parts.push({ text: neg ? a.slice(1).trim() : a, weight: neg ? -1 : 1 });
  }
  return parts;
}

function partsLabel(p) {
  const words = p.adds.map((a) => (a.startsWith('-') ? `− “${a.slice(1).trim()}”` : `+ “${a}”`)).join(' ');
  return p.similar ? `similar to image #${p.similar} ${words}` : `for ${words}`;
}

function renderPartChips(p) {
  const box = $('#part-chips');
  box.hidden = !p.adds.length;
  box.replaceChildren(...p.adds.map((a, i) => {
    const neg = a.startsWith('-') && a.length > 1;
    const label = neg ? a.slice(1).trim() : a;
    return view.h('span', { class: `part-chip${neg ? ' negative' : ''}`, dataset: { index: i } },
      view.h('span', { class: 'part-chip-label' }, `${neg ? '−' : '+'} ${label}`),
      view.h('button', {
        type: 'button', class: 'part-chip-remove icon-button', 'aria-label': `Remove “${label}”`,
        onclick: () => navigate({ adds: p.adds.filter((_, j) => j !== i), page: 1 }),
      }, '×'));
  }));
}

function threshold() {
  try {
    const v = Number(localStorage.getItem(THRESHOLD_KEY));
    return Number.isInteger(v) && v >= 0 && v <= 100 ? v : 0;
  } catch { return 0; }
}

function syncThreshold() {
  const slider = $('#threshold');
  if (document.activeElement !== slider) slider.value = String(threshold());
  const v = Number(slider.value);
  $('#threshold-value').textContent = v > 0 ? (v / 100).toFixed(2) : 'off';
  slider.disabled = Boolean(current && current.mode === 'keyword');
}

$('#threshold').addEventListener('input', () => {
  const v = Number($('#threshold').value);
  $('#threshold-value').textContent = v > 0 ? (v / 100).toFixed(2) : 'off';
});
$('#threshold').addEventListener('change', () => {
  try { localStorage.setItem(THRESHOLD_KEY, String(Number($('#threshold').value))); } catch { /* not remembered */ }
  navigate({ page: 1 }, { force: true });
});

$('#mode').addEventListener('change', (e) => navigate({ mode: e.target.value, page: 1 }));

let tagDebounce = 0;
$('#f-tag').addEventListener('input', (e) => {
  clearTimeout(tagDebounce);
  tagDebounce = setTimeout(() => navigate({ tag: e.target.value.trim(), page: 1 }, { typing: true }), DEBOUNCE_MS);
});

$('#page-size').addEventListener('change', (e) => navigate({ size: Number(e.target.value), page: 1 }));

function setFiltersOpen(open) {
  $('#filters').hidden = !open;
  $('#filters-toggle').setAttribute('aria-expanded', String(open));
}
$('#filters-toggle').addEventListener('click', () => setFiltersOpen($('#filters').hidden));

let folderDebounce = 0;
$('#f-folder').addEventListener('input', (e) => {
  clearTimeout(folderDebounce);
  folderDebounce = setTimeout(() => navigate({ folder: e.target.value.trim(), page: 1 }, { typing: true }), DEBOUNCE_MS);
});
for (const [id, key] of [['#f-after', 'after'], ['#f-before', 'before']]) {
  $(id).addEventListener('change', (e) => {
    const v = DATE_RE.test(e.target.value) ? e.target.value : '';
    navigate({ [key]: v, page: 1 });
  });
}
$('#filters').addEventListener('submit', (e) => e.preventDefault());

function clearFilters() {
  try { localStorage.removeItem(THRESHOLD_KEY); } catch { /* nothing stored */ }
  navigate({ folder: '', after: '', before: '', tag: '', page: 1 }, { force: true });
}
$('#filters-clear').addEventListener('click', clearFilters);

window.addEventListener('popstate', () => {
  typingEntry = false;
  clearTimeout(debounce);
  if ($('#detail').open) $('#detail').close();
  apply(readLocation());
});

/* ------------------------------------------------------------ image queries */

function searchByFile(file) {
  if (!file) return;
  const key = `f${++fileSeq}`;
  files.set(key, { file, url: URL.createObjectURL(file) });
  input.value = '';
  navigate({ q: '', similar: '', fileKey: key, fileName: file.name || 'pasted image', adds: [], page: 1 });
}

function searchByText(text) {
  input.value = text;
  navigate(textChanges(), { force: true });
}

async function searchByDataUrl(dataUrl) {
  try {
    const blob = await (await fetch(dataUrl)).blob();
    searchByFile(new File([blob], 'pasted image', { type: blob.type }));
  } catch (err) {
    view.notify('error', 'That pasted data URL is not readable', err.message);
  }
}

$('#pick-image').addEventListener('click', () => $('#pick-image-input').click());
$('#pick-image-input').addEventListener('change', (e) => {
  const [file] = e.target.files;
  e.target.value = '';
  searchByFile(file);
});

const overlay = $('#drop-overlay');
let dragDepth = 0;
const draggingSomething = (e) =>
  [...((e.dataTransfer && e.dataTransfer.types) || [])].some((t) => t === 'Files' || t === 'text/uri-list');

document.addEventListener('dragenter', (e) => {
  if (!draggingSomething(e)) return;
  e.preventDefault();
  dragDepth++;
  overlay.hidden = false;
});
document.addEventListener('dragover', (e) => {
  if (!draggingSomething(e)) return;
  e.preventDefault();
  e.dataTransfer.dropEffect = 'copy';
});
document.addEventListener('dragleave', () => {
  if (--dragDepth <= 0) {
    dragDepth = 0;
    overlay.hidden = true;
  }
});
document.addEventListener('drop', (e) => {
  dragDepth = 0;
  overlay.hidden = true;
  if (!e.dataTransfer) return;
  e.preventDefault();
  const list = [...e.dataTransfer.files];
  const file = list.find((f) => f.type.startsWith('image/')) || list[0];
  if (file) {
    searchByFile(file);
    return;
  }
  const uri = (e.dataTransfer.getData('text/uri-list') || '').split(/\r?\n/).find((l) => l && !l.startsWith('#'));
  if (uri) searchByText(uri.trim());
});

const editable = (el) => el && (el.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(el.tagName));

document.addEventListener('paste', (e) => {
  const cd = e.clipboardData;
  if (!cd) return;
  const file = [...cd.files].find((f) => f.type.startsWith('image/'));
  if (file) {
    e.preventDefault();
    searchByFile(file);
    return;
  }
  const text = (cd.getData('text/plain') || '').trim();
  if (/^data:image\/[\w.+-]+;base64,/i.test(text)) {
    e.preventDefault();
    searchByDataUrl(text);
  } else if (URL_RE.test(text) && !editable(e.target)) {
    e.preventDefault();
    searchByText(text);
  }
});

/* ------------------------------------------------------------ keyboard */

document.addEventListener('keydown', (e) => {
  if (e.key === '/' && !e.ctrlKey && !e.metaKey && !e.altKey && !editable(e.target) &&
      !document.querySelector('dialog[open]')) {
    e.preventDefault();
    input.focus();
    input.select();
  }
});

/* Down from the search box enters the grid. */
input.addEventListener('keydown', (e) => {
  if (e.key === 'ArrowDown' && !$('#grid').hidden && $('#grid .tile:not(.tile-skeleton)')) {
    e.preventDefault();
    focusTile(0);
  }
});

/* Arrow keys move through the grid (roving tabindex). */
$('#grid').addEventListener('keydown', (e) => {
  const tile = e.target.closest('.tile');
  if (!tile) return;
  const tiles = [...$('#grid').querySelectorAll('.tile')];
  const i = tiles.indexOf(tile);
  const top = Math.round(tiles[0].getBoundingClientRect().top);
  let cols = tiles.findIndex((t) => Math.round(t.getBoundingClientRect().top) !== top);
  if (cols <= 0) cols = tiles.length;
  const target = { ArrowRight: i + 1, ArrowLeft: i - 1, ArrowDown: i + cols, ArrowUp: i - cols,
                   Home: 0, End: tiles.length - 1 }[e.key];
  if (target === undefined) return;
  e.preventDefault();
  if (target < 0 || target >= tiles.length) return;
  focusTile(target);
});

function focusTile(i) {
  const tiles = $('#grid').querySelectorAll('.tile');
  if (!tiles[i]) return;
  tiles.forEach((t, j) => { t.tabIndex = j === i ? 0 : -1; });
  tiles[i].focus();
}

/* ------------------------------------------------------------ detail */

const detail = $('#detail');

function openDetail(i) {
  if (!results[i]) return;
  detailIndex = i;
  view.fillDetail(results[i], { index: (current.page - 1) * current.size + i + 1, total });
  $('#detail-prev').disabled = i <= 0;
  $('#detail-next').disabled = i >= results.length - 1;
  if (!detail.open) detail.showModal();
}

/* Close, then focus the result shown last (close() itself first restores
 * focus to the tile the dialog was opened from). */
function closeDetail() {
  detail.close();
  if (detailIndex >= 0 && !$('#grid').hidden) focusTile(detailIndex);
}
detail.addEventListener('cancel', (e) => {  // Escape
  e.preventDefault();
  closeDetail();
});
detail.addEventListener('click', (e) => { if (e.target === detail) closeDetail(); });  // backdrop
detail.addEventListener('close', () => {  // closed without closeDetail() (e.g. Chrome skipping 'cancel')
  const tile = $('#grid').querySelectorAll('.tile')[detailIndex];
  if (tile && document.activeElement !== tile && !$('#grid').hidden) focusTile(detailIndex);
});
detail.addEventListener('keydown', (e) => {
  if (editable(e.target)) return;
  if (e.key === 'ArrowLeft' && detailIndex > 0) openDetail(detailIndex - 1);
  else if (e.key === 'ArrowRight' && detailIndex < results.length - 1) openDetail(detailIndex + 1);
});
$('#detail-close').addEventListener('click', closeDetail);
$('#detail-prev').addEventListener('click', () => openDetail(detailIndex - 1));
$('#detail-next').addEventListener('click', () => openDetail(detailIndex + 1));
$('#detail-similar').addEventListener('click', () => {
  const r = results[detailIndex];
  detailIndex = -1;
  detail.close();
  input.value = '';
  navigate({ q: '', similar: String(r.id), fileKey: '', fileName: '', adds: [], page: 1 });
});
$('#more-like').addEventListener('submit', (e) => {   // "more like this", optionally changed by words
  e.preventDefault();
  const r = results[detailIndex];
  const text = $('#more-like-text').value.trim();
  $('#more-like-text').value = '';
  detailIndex = -1;
  detail.close();
  input.value = '';
  navigate({ q: '', similar: String(r.id), fileKey: '', fileName: '', adds: text ? [text] : [], page: 1 });
});
$('#detail-folder').addEventListener('click', () => {
  const r = results[detailIndex];
  closeDetail();
  setFiltersOpen(true);
  navigate({ folder: view.dirname(r.path), page: 1 });
});

/* ------------------------------------------------------------ uploads */

const tokenDialog = $('#token-dialog');

/* Ask for the write token; resolves to the token or null (cancelled). */
function askToken(message) {
  const field = $('#token-input');
  $('#token-message').textContent = message;
  field.value = '';
  tokenDialog.returnValue = '';
  tokenDialog.showModal();
  field.focus();
  return new Promise((resolve) => {
    tokenDialog.addEventListener('close', () =>
      resolve(tokenDialog.returnValue === 'ok' && field.value ? field.value : null), { once: true });
  });
}
$('#token-cancel').addEventListener('click', () => tokenDialog.close('cancel'));

async function uploadFiles(list) {
  if (!list.length) return;
  let token = api.getToken();
  const progress = view.notify('info', `Adding ${list.length === 1 ? 'an image' : `${list.length} images`}…`, '', { timeout: 0 });
  let added = 0;
  let known = 0;
  const failures = [];
  for (const [i, file] of list.entries()) {
    if (list.length > 1) progress.querySelector('strong').textContent = `Adding image ${i + 1} of ${list.length}…`;
    for (;;) {
      try {
        const rec = await api.upload(file, token);
        if (rec.created) added++; else known++;
        break;
      } catch (err) {
        if (err.status !== 401) {
          failures.push([file, err]);
          break;
        }
        api.setToken('');
        token = await askToken(token ? `The server refused that token: ${err.message}. Try again.`
                                     : 'This server asks for a token before it accepts new images.');
        if (token === null) {
          progress.remove();
          view.notify('info', 'Nothing was added', 'Adding images needs the server\'s token.');
          return;
        }
        api.setToken(token);
      }
    }
  }
  progress.remove();
  if (added || known) {
    const what = added === 1 ? 'Added 1 image' : `Added ${added} images`;
    view.notify('success', what, known ? `${known} ${known === 1 ? 'was' : 'were'} already in the library.` : '');
  }
  for (const [file, err] of failures)
    view.notify('error', `Could not add ${file.name || 'the image'}`,
                `${err.message}${err.status ? ` (HTTP ${err.status})` : ''}`);
  if (added) {
    try { stats = await api.stats(); } catch { /* keep the old numbers */ }
    apply(current, { force: true });
  }
}

$('#upload-button').addEventListener('click', () => $('#upload-input').click());
$('#upload-input').addEventListener('change', (e) => {
  const list = [...e.target.files];
  e.target.value = '';
  uploadFiles(list);
});

/* ------------------------------------------------------------ start */

view.fillIcons();
const initial = readLocation();
if (hasFilters(initial)) setFiltersOpen(true);
apply(initial);
api.stats().then((s) => {
  stats = s;
  $('#upload-button').hidden = Boolean(s.server && s.server.read_only);
  if (current && !queryOf(current)) view.showHome(stats);
}, (err) => view.notify('error', 'Cannot read the library statistics', err.message));
