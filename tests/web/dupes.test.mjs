/*
 * dupes.test.mjs - the near-duplicates page (web/dupes.html), run by
 * tests/e2e_web_dupes.sh on a library of 3 photos with 2 copies each
 * (half size, JPEG quality 30) and 4 distinct photos (13 images): the groups equal
 * GET /api/dupes, thumbnails side by side with the keeper marked and
 * first; an out-of-range threshold in the URL shows the server's 400
 * message; deleting a group's extras asks for the token (nothing deleted
 * without it), then removes them from the library and from the page.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, TOKEN, launch, openPage, shot } from './lib.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const TH = '0.85';   // clip-tiny is a random model: see tests/e2e_dupes.sh
const api = async (path) => (await fetch(`${BASE}${path}`)).json();

async function pageGroups(page) {
  await page.waitForSelector('#groups .group');
  await page.waitForFunction(() => [...document.querySelectorAll('#groups img')].every((i) => i.complete && i.naturalWidth > 0));
  return page.$$eval('#groups .group', (gs) => gs.map((g) => ({
    keeper: Number(g.dataset.keeper),
    ids: [...g.querySelectorAll('.member')].map((m) => Number(m.dataset.id)),
    marked: [...g.querySelectorAll('.member.keeper')].map((m) => Number(m.dataset.id)),
    badges: g.querySelectorAll('.badge-keep').length,
    boxes: g.querySelectorAll('.delete-box:checked').length,
  })));
}

test('groups as the API gives them, keeper marked', async () => {
  const want = await api(`/api/dupes?threshold=${TH}`);
  assert.equal(want.groups.length, 3, 'three groups in the test library');
  const page = await openPage(browser, { path: `/dupes.html?threshold=${TH}` });
  const got = await pageGroups(page);
  assert.deepEqual(got.map((g) => g.ids), want.groups.map((g) => g.members.map((m) => m.id)));
  for (const [i, g] of got.entries()) {
    assert.equal(g.keeper, want.groups[i].keeper);
    assert.deepEqual(g.marked, [g.keeper]);
    assert.equal(g.ids[0], g.keeper, 'keeper first');
    assert.equal(g.badges, 1);
    assert.equal(g.boxes, g.ids.length - 1, 'every extra selected for deletion, the keeper not');
  }
  // side by side: the members of a group share one row
  const tops = await page.$$eval('#groups .group:first-child .member', (ms) => ms.map((m) => Math.round(m.getBoundingClientRect().top)));
  assert.equal(new Set(tops).size, 1);
  assert.match(await page.textContent('#dupes-summary'), /3 groups, 6 extra images of 13/);
  assert.equal(await page.inputValue('#threshold'), TH);
  await shot(page, 'dupes-01-groups');
  assert.deepEqual(page.errors, []);
});

test('an out-of-range threshold shows the server message', async () => {
  const page = await openPage(browser, { path: '/dupes.html?threshold=1.5' });
  await page.waitForSelector('#dupes-error:not([hidden])');
  assert.match(await page.textContent('#dupes-error'), /'threshold' must be a cosine similarity above 0 and at most 1.*HTTP 400/);
  assert.equal(await page.$$eval('#groups .group', (g) => g.length), 0);
  await shot(page, 'dupes-02-bad-threshold');
});

test('deleting extras needs the token, then removes them', async () => {
  const before = await api(`/api/dupes?threshold=${TH}`);
  const page = await openPage(browser, { path: `/dupes.html?threshold=${TH}` });
  const groups = await pageGroups(page);
  const extras = groups[0].ids.slice(1);
  await page.click('#groups .group:first-child .delete-group');
  await page.waitForSelector('#token-form:not([hidden])');
  assert.equal((await api('/api/stats')).images, before.images, 'nothing deleted without the token');
  await shot(page, 'dupes-03-token');
  await page.fill('#token-input', 'wrong');
  await page.click('#token-form button[type="submit"]');
  await page.click('#groups .group:first-child .delete-group');
  await page.waitForSelector('#token-form:not([hidden]) #token-message:has-text("refused")');
  assert.equal((await api('/api/stats')).images, before.images, 'nothing deleted with a wrong token');
  await page.fill('#token-input', TOKEN);
  await page.click('#token-form button[type="submit"]');
  await page.click('#groups .group:first-child .delete-group');
  await page.waitForFunction((n) => document.querySelectorAll('#groups .group').length === n, groups.length - 1);
  assert.equal((await api('/api/stats')).images, before.images - extras.length);
  for (const id of extras) assert.equal((await fetch(`${BASE}/api/images/${id}`)).status, 404);
  const after = await api(`/api/dupes?threshold=${TH}`);
  assert.equal(after.groups.length, groups.length - 1);
  assert.ok(!after.groups.some((g) => g.keeper === groups[0].keeper), 'the kept image is alone now');
  await shot(page, 'dupes-04-deleted');
  assert.deepEqual(page.errors, []);
});
