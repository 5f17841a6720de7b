/*
 * fleet.test.mjs - the detail view of an image fed from Flickr through the
 * fleet (run by tests/e2e_flickr.sh against its library of 300 photos from
 * the fake Flickr): the photo's title as heading, the credit line (owner,
 * licence, link to the Flickr page), tags, description and place, the
 * thumbnail the worker made (the bytes are not stored), and "Open
 * original" pointing at the image URL.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, launch, openPage, shot, waitForResults } from './lib.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('a fleet image shows its title and attribution', async () => {
  const page = await openPage(browser, { path: '/?q=tags%3Ap42&mode=keyword' });
  const ids = await waitForResults(page);
  assert.equal(ids.length, 1);
  const api = await (await fetch(`${BASE}/api/images/${ids[0]}`)).json();
  await page.click('#grid .tile >> nth=0');
  await page.waitForSelector('#detail[open]');
  await page.waitForSelector('#detail-img.loaded');
  assert.equal(await page.textContent('#detail-title'), api.title);
  assert.match(api.title, /number 42$/);
  const credit = (await page.textContent('#detail-attribution')).replace(/\s+/g, ' ');
  assert.equal(credit, 'Photo by Owner 0 · CC0 1.0 · View on Flickr');
  assert.equal(await page.getAttribute('#detail-attribution a', 'href'),
               'https://www.flickr.com/photos/1000@N00/1000042');
  assert.match(await page.textContent('#detail-meta [data-field="tags"]'), /^flickrtest, p42, /);
  assert.match(await page.textContent('#detail-meta [data-field="description"]'), /^A fleet test photo of a /);
  assert.equal(await page.textContent('#detail-meta [data-field="location"]'), '48.8500, 2.3500');
  assert.ok(await page.isVisible('#detail-meta [data-field="taken"]'));
  const natural = await page.$eval('#detail-img', (img) => Math.max(img.naturalWidth, img.naturalHeight));
  assert.equal(natural, 256, 'the thumbnail the worker made');
  assert.equal(await page.getAttribute('#detail-original', 'href'), api.path);
  await shot(page, '30-fleet-detail');
  assert.deepEqual(page.errors, []);
});
