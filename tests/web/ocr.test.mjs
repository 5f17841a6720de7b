/*
 * ocr.test.mjs - text read from images in the web UI, run by
 * tests/e2e_web_ocr.sh on a library of a rendered word ("LIGHTHOUSE") and
 * two photos indexed with --ocr: a keyword search for the word (typed as
 * a user would, in lower case) finds exactly that image, and its detail
 * view shows the text read, as GET /api/images/ID gives it, in the
 * "Text in image" row; a photo without text has no such row.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, launch, openPage, shot, waitForResults } from './lib.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('a word inside an image is found and shown in the detail view', async () => {
  const page = await openPage(browser, { path: '/?q=lighthouse&mode=keyword' });
  const ids = await waitForResults(page);
  assert.equal(ids.length, 1, 'only the rendered sign has the word');
  const api = await (await fetch(`${BASE}/api/images/${ids[0]}`)).json();
  assert.match(api.path, /sign\.png$/);
  assert.match(api.ocr, /LIGHTHOUSE/);
  await page.click('#grid .tile >> nth=0');
  await page.waitForSelector('#detail[open]');
  const row = await page.textContent('#detail-meta [data-field="text in image"]');
  assert.equal(row.trim(), api.ocr.trim());
  const terms = await page.$$eval('#detail-meta dt', (dts) => dts.map((d) => d.textContent));
  assert.ok(terms.includes('Text in image'));
  await shot(page, '40-ocr-detail');
  assert.deepEqual(page.errors, []);
});

test('a photo without text has no text row', async () => {
  const page = await openPage(browser, { path: '/?q=shark&mode=keyword' });
  const ids = await waitForResults(page);
  assert.equal(ids.length, 1);
  await page.click('#grid .tile >> nth=0');
  await page.waitForSelector('#detail[open]');
  assert.equal(await page.$$eval('#detail-meta [data-field="text in image"]', (r) => r.length), 0);
  assert.deepEqual(page.errors, []);
});
