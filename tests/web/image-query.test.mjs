/*
 * image-query.test.mjs - searching by an image: picked with the file
 * chooser, dropped on the page (a synthetic drop event whose DataTransfer
 * carries a File built from a real image's bytes), pasted from the
 * clipboard; and a server error (an image URL the server refuses to fetch)
 * shown on the page with the server's own message.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { launch, openPage, shot, waitForResults, summary, imageFile } from './lib.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const nameOfFirst = (page) => page.$eval('#grid .caption .name', (el) => el.textContent);

test('choosing an image file finds that image first', async () => {
  const page = await openPage(browser);
  await page.setInputFiles('#pick-image-input', imageFile('formats/chelsea.png'));
  await page.waitForURL(/\?file=chelsea\.png$/);
  await waitForResults(page);
  assert.equal(await nameOfFirst(page), 'chelsea.png');
  assert.equal(await page.textContent('#grid .caption .score'), '1.000');
  assert.match(await summary(page), /^1–16 of 30 similar to chelsea\.png/);
  assert.equal(await page.textContent('.query-chip-label'), 'chelsea.png');
  await shot(page, '14-image-file');
  // paging keeps the image query
  await page.click('#pager [aria-label="Next page"]');
  await page.waitForURL(/file=chelsea\.png&page=2/);
  assert.equal((await waitForResults(page)).length, 14);
  assert.deepEqual(page.errors, []);
});

async function dispatchWithFile(page, type, target, rel, mime) {
  const b64 = fs.readFileSync(imageFile(rel)).toString('base64');
  await page.evaluate(({ type, target, b64, name, mime }) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const dt = new DataTransfer();
    dt.items.add(new File([bytes], name, { type: mime }));
    const el = document.querySelector(target);
    if (type === 'paste') {
      el.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
    } else {
      el.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
    }
  }, { type, target, b64, name: rel.split('/').pop(), mime });
}

test('dropping an image on the page searches by it', async () => {
  const page = await openPage(browser, { path: '/?q=something' });
  await waitForResults(page);
  await dispatchWithFile(page, 'dragenter', '#grid', 'formats/coffee.png', 'image/png');
  await page.waitForSelector('#drop-overlay:not([hidden])');
  await shot(page, '15-drag-over');
  await dispatchWithFile(page, 'drop', '#grid', 'formats/coffee.png', 'image/png');
  await page.waitForSelector('#drop-overlay', { state: 'hidden' });
  await page.waitForURL(/\?file=coffee\.png$/);
  await waitForResults(page);
  assert.equal(await nameOfFirst(page), 'coffee.png');
  assert.equal(await page.textContent('#grid .caption .score'), '1.000');
  assert.equal(await page.inputValue('#q'), '', 'the text query is replaced');
  await shot(page, '16-dropped-image');
  // back to the text search, forward to the image search (kept in memory)
  await page.goBack();
  await page.waitForURL(/q=something/);
  assert.equal(await page.inputValue('#q'), 'something');
  await page.goForward();
  await page.waitForURL(/file=coffee\.png/);
  await waitForResults(page);
  assert.equal(await nameOfFirst(page), 'coffee.png');
});

test('pasting an image searches by it', async () => {
  const page = await openPage(browser);
  await page.focus('#q');
  await dispatchWithFile(page, 'paste', '#q', 'imagenet/' + fs.readdirSync(imageFile('imagenet')).sort()[4], 'image/jpeg');
  await waitForResults(page);
  assert.equal(await nameOfFirst(page), fs.readdirSync(imageFile('imagenet')).sort()[4]);
  assert.equal(await page.textContent('#grid .caption .score'), '1.000');
});

test('a server error is shown on the page with its message', async () => {
  const page = await openPage(browser);
  // An image URL on loopback: the server refuses to fetch it (SSRF guard).
  await page.fill('#q', 'http://127.0.0.1:9/cat.jpg');
  await page.press('#q', 'Enter');
  await page.waitForSelector('.state-error');
  const text = await page.textContent('.state-error');
  assert.match(text, /The server could not run this search\s*HTTP 400 · url_refused/);
  assert.match(text, /image_url: http:\/\/127\.0\.0\.1:9\/cat\.jpg: refused: the URL resolves to a private, loopback/);
  assert.equal(await page.getAttribute('.state-error', 'role'), 'alert');
  assert.equal(await page.isHidden('#grid'), true);
  await shot(page, '17-server-error');

  // A non-image dropped: the server's 400 is shown too.
  await page.evaluate(() => {
    const dt = new DataTransfer();
    dt.items.add(new File(['just some text'], 'notes.txt', { type: 'text/plain' }));
    document.body.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
  });
  await page.waitForURL(/file=notes\.txt/);
  await page.waitForSelector('.state-error .error-message:text("image query: not a recognised image")');
  assert.match(await page.textContent('.state-error'), /HTTP 400 · invalid_image/);

  // Retry after fixing the query: a text search works again.
  await page.fill('#q', 'a cat');
  await page.press('#q', 'Enter');
  assert.equal((await waitForResults(page)).length, 16);
  assert.equal(await page.isHidden('.state-error'), true);
});
