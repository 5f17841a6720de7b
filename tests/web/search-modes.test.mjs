/*
 * search-modes.test.mjs - search modes, combined queries and the relevance
 * threshold in the page (docs/search.md): the mode switch (results equal
 * the API's for that mode, malformed keyword syntax shows the server's 400
 * message), "more like this" with a text change and the parts as removable
 * chips (results equal the API's combined query), and the threshold slider
 * (sent as min_score, the count above it shown, remembered after a reload).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, launch, openPage, shot, waitForResults, summary } from './lib.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const api = async (path, body) => (await fetch(BASE + path, body ? {
  method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
} : {})).json();

test('the mode switch runs keyword searches; bad syntax shows the 400 message', async () => {
  const page = await openPage(browser, { path: '/?q=tench' });
  await waitForResults(page);
  await page.selectOption('#mode', 'keyword');
  await page.waitForURL((u) => u.searchParams.get('mode') === 'keyword');
  const ids = await waitForResults(page);
  const want = await api('/api/search?q=tench&mode=keyword&k=16');
  assert.equal(want.mode, 'keyword');
  assert.ok(want.results.length >= 1);
  assert.deepEqual(ids, want.results.map((r) => r.id));
  assert.match(await summary(page), /^1–1 of 1 for “tench” · keyword/);
  assert.equal(await page.isDisabled('#threshold'), true, 'no cosine threshold in keyword mode');
  // FTS5 syntax: OR of two file-name words
  await page.fill('#q', 'tench OR goldfinch OR hammerhead');
  await page.press('#q', 'Enter');
  await page.waitForURL((u) => u.searchParams.get('q') === 'tench OR goldfinch OR hammerhead');
  const orIds = await waitForResults(page);
  const orWant = await api('/api/search?q=tench%20OR%20goldfinch%20OR%20hammerhead&mode=keyword&k=16');
  assert.deepEqual(orIds, orWant.results.map((r) => r.id));
  await shot(page, '30-keyword-mode');
  // malformed syntax: the server's message, not a crash
  await page.fill('#q', '"tench');
  await page.press('#q', 'Enter');
  await page.waitForSelector('.state-code');
  assert.match(await page.textContent('.state-code'), /HTTP 400 · invalid_field/);
  assert.match(await page.textContent('.error-message'), /keyword query ""tench" is not valid: unterminated string/);
  await shot(page, '31-keyword-syntax-error');
  // the mode comes back from a link
  await page.goto('/?q=hammerhead&mode=semantic');
  await waitForResults(page);
  assert.equal(await page.inputValue('#mode'), 'semantic');
  assert.match(await summary(page), / · semantic · /);
  assert.deepEqual(page.errors, []);
});

test('more like this takes a text change; parts are removable chips', async () => {
  const page = await openPage(browser, { path: '/?q=a%20horse' });
  const ids = await waitForResults(page);
  await page.click('#grid .tile >> nth=2');
  await page.waitForSelector('#detail[open]');
  await page.fill('#more-like-text', 'at night');
  await page.click('#more-like-go');
  await page.waitForURL((u) => u.searchParams.get('similar') === String(ids[2]) &&
                               u.searchParams.get('add') === 'at night');
  let got = await waitForResults(page);
  let want = await api('/api/search', { parts: [{ image_id: ids[2], weight: 1 }, { text: 'at night', weight: 1 }], k: 16 });
  assert.deepEqual(got, want.results.map((r) => r.id));
  assert.equal(await page.isVisible('#query-chip'), true);
  assert.deepEqual(await page.$$eval('#part-chips .part-chip-label', (els) => els.map((e) => e.textContent)), ['+ at night']);
  assert.match(await summary(page), new RegExp(`similar to image #${ids[2]} \\+ “at night”`));
  // words typed next to the chips become a negative part on Enter (no search while typing)
  await page.fill('#q', '-people');
  await page.press('#q', 'Enter');
  await page.waitForURL((u) => u.searchParams.getAll('add').join('|') === 'at night|-people');
  got = await waitForResults(page);
  want = await api('/api/search', { parts: [{ image_id: ids[2], weight: 1 }, { text: 'at night', weight: 1 },
                                            { text: 'people', weight: -1 }], k: 16 });
  assert.deepEqual(got, want.results.map((r) => r.id));
  assert.equal(await page.inputValue('#q'), '');
  assert.deepEqual(await page.$$eval('#part-chips .part-chip', (els) => els.map((e) => e.className)),
                   ['part-chip', 'part-chip negative']);
  await shot(page, '32-combined-chips');
  // remove the first text chip
  await page.click('#part-chips .part-chip >> nth=0 >> .part-chip-remove');
  await page.waitForURL((u) => u.searchParams.getAll('add').join('|') === '-people');
  got = await waitForResults(page);
  want = await api('/api/search', { parts: [{ image_id: ids[2], weight: 1 }, { text: 'people', weight: -1 }], k: 16 });
  assert.deepEqual(got, want.results.map((r) => r.id));
  // remove the image chip: the text parts remain the query
  await page.click('.query-chip-clear');
  await page.waitForURL((u) => !u.searchParams.get('similar') && u.searchParams.get('add') === '-people');
  got = await waitForResults(page);
  want = await api('/api/search', { parts: [{ text: 'people', weight: -1 }], k: 16 });
  assert.deepEqual(got, want.results.map((r) => r.id));
  // back restores the previous combination
  await page.goBack();
  await page.waitForURL((u) => u.searchParams.get('similar') === String(ids[2]));
  await waitForResults(page);
  assert.equal(await page.isVisible('#query-chip'), true);
  assert.deepEqual(page.errors, []);
});

test('the relevance threshold filters, counts and is remembered', async () => {
  const page = await openPage(browser, { path: '/?q=a%20horse' });
  const ids = await waitForResults(page);
  assert.equal(await page.textContent('#threshold-value'), 'off');
  const path = `/?similar=${ids[0]}&mode=semantic`;
  await page.goto(path);
  await waitForResults(page);
  const all = await api(`/api/search?image_id=${ids[0]}&mode=semantic&k=16`);
  const cut = Math.floor(all.results[4].score * 100) / 100;   // at least 5 results pass
  const above = await api(`/api/search?image_id=${ids[0]}&mode=semantic&k=16&min_score=${cut}`);
  assert.ok(above.total >= 5 && above.total < 30, `threshold ${cut} keeps ${above.total}`);
  await page.$eval('#threshold', (el, v) => {
    el.value = String(v);
    el.dispatchEvent(new Event('input', { bubbles: true }));
    el.dispatchEvent(new Event('change', { bubbles: true }));
  }, Math.round(cut * 100));
  await page.waitForFunction((n) => document.querySelector('#summary').textContent.includes(`of ${n} `), above.total);
  const got = await waitForResults(page);
  assert.deepEqual(got, above.results.map((r) => r.id));
  assert.equal(await page.textContent('#threshold-value'), cut.toFixed(2));
  assert.match(await summary(page), new RegExp(`of ${above.total} similar to image #${ids[0]} · score ≥ ${cut.toFixed(2)}`));
  await shot(page, '33-threshold');
  // remembered: a reload (new search) keeps it
  await page.reload();
  await waitForResults(page);
  assert.equal(await page.inputValue('#threshold'), String(Math.round(cut * 100)));
  assert.match(await summary(page), new RegExp(`of ${above.total} `));
  // with the remembered threshold a text query finds nothing (text-to-image
  // scores of the tiny model are far lower): the empty state's "Clear
  // filters" resets it
  await page.goto('/?q=a%20horse&mode=semantic');
  await page.waitForSelector('#state button');
  assert.match(await page.textContent('#state'), /No images match/);
  await page.click('#state button');
  await waitForResults(page);
  assert.equal(await page.textContent('#threshold-value'), 'off');
  assert.deepEqual(page.errors, []);
});
