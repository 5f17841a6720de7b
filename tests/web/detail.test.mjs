/*
 * detail.test.mjs - the detail view of a result (larger image, metadata,
 * link to the original) and "find similar" (an image search by id).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, launch, openPage, shot, waitForResults, summary } from './lib.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('the detail view shows the image, its metadata and the original', async () => {
  const page = await openPage(browser, { path: '/?q=an%20astronaut' });
  const ids = await waitForResults(page);
  await page.click('#grid .tile >> nth=0');
  await page.waitForSelector('#detail[open]');
  await page.waitForSelector('#detail-img.loaded');
  const rec = await (await fetch(`${BASE}/api/images/${ids[0]}`)).json();
  const name = rec.path.split('/').pop();
  assert.equal(await page.textContent('#detail-title'), name);
  assert.equal(await page.textContent('#detail-meta [data-field="path"]'), rec.path);
  assert.equal(await page.textContent('#detail-meta [data-field="dimensions"]'), `${rec.width} × ${rec.height} px`);
  assert.match(await page.textContent('#detail-meta [data-field="size"]'), /\d (bytes|KB|MB)$/);
  assert.ok(await page.isVisible('#detail-meta [data-field="modified"], #detail-meta [data-field="taken"]'));
  assert.ok(await page.isVisible('#detail-meta [data-field="camera"]'));
  assert.match(await page.textContent('#detail-score'), /^Score -?\d\.\d{3} · result 1 of 30$/);
  assert.equal(await page.getAttribute('#detail-img', 'src'), `/api/images/${ids[0]}/thumb?size=1024`);
  const natural = await page.$eval('#detail-img', (img) => img.naturalWidth);
  assert.ok(natural > 256, 'a larger image than the grid thumbnail');
  const href = await page.getAttribute('#detail-original', 'href');
  assert.equal(href, `/api/images/${ids[0]}/file`);
  const original = await fetch(BASE + href);
  assert.equal(original.status, 200);
  assert.equal(Number(original.headers.get('content-length')), rec.size);
  await shot(page, '12-detail');
  // Previous is disabled on the first result; the close button closes.
  assert.equal(await page.isDisabled('#detail-prev'), true);
  await page.click('#detail-close');
  await page.waitForFunction(() => !document.querySelector('#detail').open);
  assert.deepEqual(page.errors, []);
});

test('find similar searches by the image id', async () => {
  const page = await openPage(browser, { path: '/?q=a%20horse' });
  const ids = await waitForResults(page);
  await page.click('#grid .tile >> nth=3');
  await page.waitForSelector('#detail[open]');
  await page.click('#detail-similar');
  await page.waitForURL(new RegExp(`\\?similar=${ids[3]}$`));
  const similar = await waitForResults(page);
  const api = await (await fetch(`${BASE}/api/search?image_id=${ids[3]}&k=16`)).json();
  assert.deepEqual(similar, api.results.map((r) => r.id));
  assert.equal(similar[0], ids[3], 'the image itself is the most similar');
  assert.equal(await page.textContent('#grid .caption .score'), '1.000');
  assert.equal(await page.isVisible('#query-chip'), true);
  assert.equal(await page.inputValue('#q'), '');
  assert.match(await summary(page), new RegExp(`similar to image #${ids[3]}`));
  await page.waitForFunction((name) => document.querySelector('.query-chip-label').textContent === name,
                             api.results[0].path.split('/').pop());
  await shot(page, '13-find-similar');
  // back returns to the text search
  await page.goBack();
  await page.waitForURL((u) => u.searchParams.get('q') === 'a horse');
  assert.deepEqual(await waitForResults(page), ids);
  assert.equal(await page.isHidden('#query-chip'), true);
});
