/*
 * dupes.js - the near-duplicates page (dupes.html, docs/web.md).
 *
 * Loads GET /api/dupes?threshold=T&max_distance=D (the values live in the
 * URL, so a review can be bookmarked), shows each group's images side by
 * side, keeper first and marked, every extra with a "delete" checkbox
 * (checked).  Deleting calls DELETE /api/images/ID for the checked extras
 * of one group (or of all groups) with the write token from the session
 * (api.js); a 401/403 shows the token field and nothing is deleted.
 */
import { ApiError, getToken, setToken, thumbUrl } from './api.js';

const $ = (sel) => document.querySelector(sel);

async function call(path, options = {}) {
  const res = await fetch(path, options);
  let body = null;
  try { body = await res.json(); } catch { body = null; }
  if (!res.ok) {
    const e = body && body.error;
    throw new ApiError(res.status, (e && e.code) || `http_${res.status}`, (e && e.message) || `HTTP ${res.status}`);
  }
  return body;
}

function showError(message) {
  const el = $('#dupes-error');
  el.textContent = message;
  el.hidden = !message;
}

const base = (p) => p.split('/').pop();

function memberNode(m) {
  const fig = document.createElement('figure');
  fig.className = `member${m.keeper ? ' keeper' : ''}`;
  fig.dataset.id = m.id;
  const img = document.createElement('img');
  img.src = thumbUrl(m.id);
  img.alt = base(m.path || String(m.id));
  img.loading = 'lazy';
  fig.append(img);
  const cap = document.createElement('figcaption');
  if (m.keeper) {
    const b = document.createElement('span');
    b.className = 'badge-keep';
    b.textContent = 'Keep';
    cap.append(b);
  }
  const path = document.createElement('p');
  path.className = 'path';
  path.textContent = m.path || `#${m.id}`;
  path.title = m.path || '';
  const facts = document.createElement('p');
  facts.className = 'facts';
  facts.textContent = `${m.width}×${m.height} · ${m.format || ''} · ${Math.round((m.size || 0) / 1024)} KB`;
  cap.append(path, facts);
  if (m.via !== null && m.via !== undefined) {
    const why = document.createElement('p');
    why.className = 'reason';
    why.textContent = m.same_content ? `same file as #${m.via}`
      : `similarity ${m.similarity.toFixed(3)} · hash ${m.distance} bits · to #${m.via}`;
    cap.append(why);
  }
  if (!m.keeper) {
    const label = document.createElement('label');
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.checked = true;
    box.className = 'delete-box';
    box.value = m.id;
    label.append(box, 'delete');
    cap.append(label);
  }
  fig.append(cap);
  return fig;
}

function render(d) {
  const groups = $('#groups');
  groups.replaceChildren();
  const extras = d.groups.reduce((n, g) => n + g.members.length - 1, 0);
  $('#dupes-summary').textContent = d.groups.length
    ? `${d.groups.length} group${d.groups.length === 1 ? '' : 's'}, ${extras} extra image${extras === 1 ? '' : 's'} of ${d.images}`
      + ` · ${d.candidates} candidate pairs, ${d.rejected} rejected by the hashes · ${d.seconds} s`
    : `No near-duplicates among ${d.images} images (similarity ≥ ${d.threshold}, hash ≤ ${d.max_distance} bits).`;
  $('#dupes-actions').hidden = !d.groups.length;
  d.groups.forEach((g, i) => {
    const sec = document.createElement('section');
    sec.className = 'group';
    sec.dataset.keeper = g.keeper;
    const head = document.createElement('div');
    head.className = 'group-head';
    const h = document.createElement('h2');
    h.textContent = `Group ${i + 1} · ${g.members.length} images`;
    const del = document.createElement('button');
    del.type = 'button';
    del.className = 'button delete-group';
    del.textContent = 'Delete selected extras';
    del.addEventListener('click', () => deleteIn([sec]));
    head.append(h, del);
    const row = document.createElement('div');
    row.className = 'members';
    for (const m of g.members) row.append(memberNode(m));
    sec.append(head, row);
    groups.append(sec);
  });
}

async function load() {
  const params = new URLSearchParams(location.search);
  if (params.get('threshold')) $('#threshold').value = params.get('threshold');
  if (params.get('max_distance')) $('#max-distance').value = params.get('max_distance');
  const q = new URLSearchParams({ threshold: $('#threshold').value, max_distance: $('#max-distance').value });
  showError('');
  $('#dupes-summary').textContent = 'Looking for near-duplicates…';
  document.body.setAttribute('aria-busy', 'true');
  try {
    render(await call(`/api/dupes?${q}`));
  } catch (err) {
    $('#groups').replaceChildren();
    $('#dupes-summary').textContent = '';
    showError(`${err.message} (HTTP ${err.status})`);
  } finally {
    document.body.removeAttribute('aria-busy');
  }
}

/* Delete the checked extras of the given group sections, one request each;
 * stops at the first refusal (a missing or wrong token asks for it). */
async function deleteIn(sections) {
  showError('');
  for (const sec of sections) {
    for (const box of [...sec.querySelectorAll('.delete-box:checked')]) {
      const token = getToken();
      try {
        await call(`/api/images/${encodeURIComponent(box.value)}`,
                   { method: 'DELETE', headers: token ? { Authorization: `Bearer ${token}` } : {} });
      } catch (err) {
        if (err.status === 401 || err.status === 403) {
          $('#token-message').textContent = token ? `The server refused the token: ${err.message}`
            : 'Deleting needs the server\'s write token.';
          $('#token-form').hidden = false;
          $('#token-input').focus();
          return;
        }
        showError(`Could not delete #${box.value}: ${err.message} (HTTP ${err.status})`);
        return;
      }
      box.closest('.member').remove();
    }
    if (sec.querySelectorAll('.member').length < 2) sec.remove();
  }
  const left = document.querySelectorAll('#groups .group').length;
  $('#dupes-summary').textContent = left ? `${left} group${left === 1 ? '' : 's'} left after deleting.`
    : 'Deleted: no groups left.';
  $('#dupes-actions').hidden = !left;
}

$('#dupes-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const t = Number($('#threshold').value);
  if (!(t > 0 && t <= 1)) {
    showError('The similarity threshold must be above 0 and at most 1.');
    return;
  }
  const q = new URLSearchParams({ threshold: $('#threshold').value, max_distance: $('#max-distance').value });
  history.pushState(null, '', `?${q}`);
  load();
});
$('#delete-all').addEventListener('click', () => deleteIn([...document.querySelectorAll('#groups .group')]));
$('#token-form').addEventListener('submit', (e) => {
  e.preventDefault();
  setToken($('#token-input').value);
  $('#token-form').hidden = true;
  $('#token-input').value = '';
});
addEventListener('popstate', load);
load();
