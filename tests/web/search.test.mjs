/*
 * search.test.mjs - text search in the browser: search as you type,
 * paging, page size, the URL (shared links, back/forward), keyboard
 * navigation, filters and the empty state, phone and dark layouts.  The
 * grid is checked against what the API itself answers for the same query.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, DATA, launch, openPage, shot, waitForResults, summary } from './lib.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

async function apiIds(params) {
  const res = await fetch(`${BASE}/api/search?${new URLSearchParams(params)}`);
  assert.equal(res.status, 200);
  const body = await res.json();
  return { ids: body.results.map((r) => r.id), total: body.total, results: body.results };
}

test('the home page shows the library and the search box', async () => {
  const page = await openPage(browser);
  await page.waitForSelector('.state-title:text("Search 30 images")');
  assert.equal(await page.getAttribute('#q', 'placeholder'), 'Search your images…');
  assert.equal(await page.isVisible('#upload-button'), true, 'the server is writable: upload is offered');
  await shot(page, '01-home');
  assert.deepEqual(page.errors, []);
});

test('typing searches (debounced) and shows 16 results in score order', async () => {
  const page = await openPage(browser);
  const historyBefore = await page.evaluate(() => history.length);
  await page.click('#q');
  await page.keyboard.type('a cat on a sofa', { delay: 20 });
  const ids = await waitForResults(page);
  assert.match(page.url(), /\?q=a\+cat\+on\+a\+sofa$/);
  const api = await apiIds({ q: 'a cat on a sofa', k: 16 });
  assert.equal(ids.length, 16);
  assert.deepEqual(ids, api.ids, 'the grid shows the API ranking');
  assert.match(await summary(page), /^1–16 of 30 for “a cat on a sofa”/);
  const scores = await page.$$eval('#grid .caption .score', (els) => els.map((e) => Number(e.textContent)));
  assert.deepEqual(scores, api.results.map((r) => Number(r.score.toFixed(3))));
  for (let i = 1; i < scores.length; i++) assert.ok(scores[i] <= scores[i - 1], 'descending scores');
  // lazily loaded thumbnails from the thumbnail endpoint
  const img = await page.$eval('#grid img', (el) => ({ src: el.getAttribute('src'), loading: el.loading }));
  assert.equal(img.src, `/api/images/${ids[0]}/thumb`);
  assert.equal(img.loading, 'lazy');
  // typing is one history entry, not one per keystroke
  assert.equal(await page.evaluate(() => history.length), historyBefore + 1);
  await shot(page, '02-results');
  await page.hover('#grid .tile >> nth=1');
  assert.equal(await page.isVisible('#grid .tile >> nth=1 >> .score-badge'), true);
  await shot(page, '03-results-hover');
  assert.deepEqual(page.errors, []);
});

test('a slow search shows the loading state, then the results', async () => {
  const page = await openPage(browser);
  let release;
  const held = new Promise((resolve) => { release = resolve; });
  await page.route('**/api/search?*', async (route) => { await held; await route.continue(); });
  await page.fill('#q', 'a lizard');
  await page.press('#q', 'Enter');
  await page.waitForSelector('#grid.skeleton .tile-skeleton');
  assert.equal(await page.getAttribute('#results', 'aria-busy'), 'true');
  assert.equal(await summary(page), 'Searching…');
  await shot(page, '02a-loading');
  release();
  assert.equal((await waitForResults(page)).length, 16);
  assert.equal(await page.getAttribute('#results', 'aria-busy'), 'false');
});

test('pagination and page size', async () => {
  const page = await openPage(browser, { path: '/?q=tench' });
  const first = await waitForResults(page);
  await page.click('#pager [aria-label="Next page"]');
  await page.waitForURL(/page=2/);
  const second = await waitForResults(page);
  const api = await apiIds({ q: 'tench', k: 16, offset: 16 });
  assert.deepEqual(second, api.ids);
  assert.equal(second.length, 14);
  assert.ok(second.every((id) => !first.includes(id)), 'page 2 has other images than page 1');
  assert.match(await summary(page), /^17–30 of 30/);
  assert.equal(await page.getAttribute('#pager [aria-label="Page 2"]', 'aria-current'), 'page');
  assert.equal(await page.isDisabled('#pager [aria-label="Next page"]'), true);
  await shot(page, '04-page-2');

  await page.click('#pager [aria-label="Page 1"]');
  await page.waitForURL((u) => !u.search.includes('page='));
  assert.deepEqual(await waitForResults(page), first);

  await page.selectOption('#page-size', '32');
  await page.waitForURL(/n=32/);
  const all = await waitForResults(page);
  assert.equal(all.length, 30);
  assert.deepEqual(all.slice(0, 16), first);
  assert.equal(await page.isHidden('#pager'), true, 'one page: no pager');
  await shot(page, '05-page-size-32');
});

test('a URL restores its search, and the back button the previous one', async () => {
  const page = await openPage(browser, { path: '/?q=a%20bird&page=2' });
  const ids = await waitForResults(page);
  assert.equal(await page.inputValue('#q'), 'a bird');
  assert.deepEqual(ids, (await apiIds({ q: 'a bird', k: 16, offset: 16 })).ids);
  assert.match(await summary(page), /^17–30 of 30 for “a bird”/);

  await page.fill('#q', 'a red car');
  await page.press('#q', 'Enter');
  await page.waitForURL(/q=a\+red\+car/);
  const car = await waitForResults(page);
  assert.deepEqual(car, (await apiIds({ q: 'a red car', k: 16 })).ids);

  await page.goBack();
  await page.waitForURL((u) => u.searchParams.get('q') === 'a bird' && u.searchParams.get('page') === '2');
  assert.equal(await page.inputValue('#q'), 'a bird');
  assert.deepEqual(await waitForResults(page), ids);
  await page.goForward();
  await page.waitForURL(/q=a\+red\+car/);
  assert.equal(await page.inputValue('#q'), 'a red car');
  assert.deepEqual(await waitForResults(page), car);
});

test('keyboard: / focuses search, arrows move in the grid, Enter opens, Escape closes', async () => {
  const page = await openPage(browser, { path: '/?q=fish' });
  await waitForResults(page);
  await page.click('.results-bar .summary');
  await page.keyboard.press('/');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'q');

  await page.keyboard.press('ArrowDown');  // from the search box into the grid
  const focused = () => page.evaluate(() => Number(document.activeElement.dataset.index));
  const cols = await page.$$eval('#grid .tile', (t) => t.filter((x) => x.getBoundingClientRect().top === t[0].getBoundingClientRect().top).length);
  assert.ok(cols > 1);
  assert.equal(await focused(), 0);
  await page.keyboard.press('ArrowRight');
  assert.equal(await focused(), 1);
  await page.keyboard.press('ArrowDown');
  assert.equal(await focused(), 1 + cols);
  await page.keyboard.press('ArrowLeft');
  assert.equal(await focused(), cols);
  await page.keyboard.press('ArrowUp');
  assert.equal(await focused(), 0);
  assert.equal(await page.getAttribute('#grid .tile >> nth=0', 'tabindex'), '0');
  await page.keyboard.press('ArrowRight');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#detail[open]');
  const second = await page.getAttribute('#grid .tile >> nth=1', 'data-id');
  assert.equal(await page.getAttribute('#detail-original', 'href'), `/api/images/${second}/file`);
  await page.keyboard.press('ArrowRight');  // next result inside the detail view
  const third = await page.getAttribute('#grid .tile >> nth=2', 'data-id');
  assert.equal(await page.getAttribute('#detail-original', 'href'), `/api/images/${third}/file`);
  await page.keyboard.press('Escape');
  await page.waitForFunction(() => !document.querySelector('#detail').open);
  assert.equal(await focused(), 2, 'focus returns to the result shown last');
  assert.equal(await page.getAttribute('#grid .tile >> nth=2', 'tabindex'), '0');
});

test('filters: folder prefix, date range, empty state', async () => {
  const page = await openPage(browser, { path: '/?q=a%20photo' });
  await waitForResults(page);
  await page.click('#filters-toggle');
  const folder = `${DATA}/formats/`;
  await page.fill('#f-folder', folder);
  await page.waitForURL(/folder=/);
  await waitForResults(page);
  const paths = await page.$$eval('#grid .tile', (t) => t.map((x) => x.getAttribute('aria-label')));
  const api = await apiIds({ q: 'a photo', k: 16, path_prefix: folder });
  assert.equal(api.total, 10);
  assert.ok(api.results.every((r) => r.path.startsWith(folder)));
  assert.equal(paths.length, 10);
  assert.match(await summary(page), /^1–10 of 10/);
  assert.equal(await page.textContent('#filters-count'), '1');
  await shot(page, '06-filter-folder');

  await page.fill('#f-before', '2000-01-01');
  await page.waitForURL(/before=2000-01-01/);
  await page.waitForSelector('.state-empty');
  assert.match(await page.textContent('.state-empty'), /No images match/);
  assert.equal(await page.isHidden('#grid'), true);
  await shot(page, '07-empty');

  await page.click('.state-empty button:text("Clear filters")');
  await page.waitForURL((u) => !u.search.includes('folder') && !u.search.includes('before'));
  assert.equal((await waitForResults(page)).length, 16);
  assert.equal(await page.inputValue('#f-folder'), '');
});

test('phone and dark layouts', async () => {
  const phone = await openPage(browser, { path: '/?q=a%20dog', viewport: { width: 390, height: 844 } });
  await waitForResults(phone);
  const cols = await phone.$$eval('#grid .tile', (t) => t.filter((x) => x.getBoundingClientRect().top === t[0].getBoundingClientRect().top).length);
  assert.equal(cols, 2, 'two columns on a phone');
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth > innerWidth);
  assert.equal(overflow, false, 'no horizontal scrolling on a phone');
  await shot(phone, '08-phone');
  await phone.click('#grid .tile >> nth=0');
  await phone.waitForSelector('#detail-img.loaded');
  await shot(phone, '09-phone-detail');

  const dark = await openPage(browser, { path: '/?q=a%20dog', colorScheme: 'dark', viewport: { width: 1600, height: 900 } });
  await waitForResults(dark);
  const bg = await dark.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(bg, 'rgb(17, 18, 24)', 'dark theme follows the system');
  await shot(dark, '10-wide-dark');
  await dark.goto('/');
  await dark.waitForSelector('.state-home .hints');
  await shot(dark, '11-home-dark');
});
