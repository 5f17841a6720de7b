/*
 * upload.test.mjs - adding images through the page.  The server under test
 * has a write token: the first upload gets a 401, the page asks for the
 * token (a wrong one is refused and asked again), keeps it for the tab and
 * the image is added.  A non-image upload shows the server's 400 message.
 * Runs last: it changes the library.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { BASE, TOKEN, launch, openPage, shot, waitForResults, imageFile } from './lib.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const images = async () => (await (await fetch(`${BASE}/api/stats`)).json()).images;

test('upload asks for the token, then adds the image', async () => {
  assert.ok(TOKEN, 'the server under test has a token');
  const before = await images();
  const page = await openPage(browser, { path: '/?q=a%20bird' });
  await waitForResults(page);
  const file = fs.readdirSync(imageFile('upload')).filter((f) => f.endsWith('.JPEG')).sort()[0];
  await page.setInputFiles('#upload-input', imageFile(`upload/${file}`));
  await page.waitForSelector('#token-dialog[open]');
  assert.match(await page.textContent('#token-message'), /asks for a token/);
  await shot(page, '18-token-prompt');

  await page.fill('#token-input', 'wrong-token');
  await page.click('#token-dialog button[type="submit"]');
  await page.waitForSelector('#token-dialog[open] #token-message:text("refused")');
  assert.match(await page.textContent('#token-message'), /invalid bearer token/);
  assert.equal(await images(), before, 'nothing added with a wrong token');

  await page.fill('#token-input', TOKEN);
  await page.click('#token-dialog button[type="submit"]');
  await page.waitForSelector('.notice-success:has-text("Added 1 image")');
  assert.equal(await images(), before + 1);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('clipdex.token')), TOKEN);
  // the search is run again and now ranks the new image too
  await page.waitForFunction((n) => document.querySelector('#summary').textContent.includes(`of ${n}`), before + 1);
  await waitForResults(page);
  await shot(page, '19-upload-done');

  // The same image again: the token is remembered, the server knows it.
  await page.setInputFiles('#upload-input', imageFile(`upload/${file}`));
  await page.waitForSelector('.notice-success:has-text("1 was already in the library")');
  assert.equal(await page.isHidden('#token-dialog'), true);
  assert.equal(await images(), before + 1);
});

test('a non-image upload shows the server error', async () => {
  const page = await openPage(browser);
  await page.evaluate((t) => sessionStorage.setItem('clipdex.token', t), TOKEN);
  await page.setInputFiles('#upload-input', imageFile('upload/notes.txt'));
  const note = await page.waitForSelector('.notice-error');
  const text = await note.textContent();
  assert.match(text, /Could not add notes\.txt/);
  assert.match(text, /upload: not an image \(content is no known image format\) \(HTTP 400\)/);
  assert.equal(await note.getAttribute('role'), 'alert');
  await shot(page, '20-upload-error');
});

test('cancelling the token prompt adds nothing', async () => {
  const before = await images();
  const page = await openPage(browser);
  const file = fs.readdirSync(imageFile('upload')).filter((f) => f.endsWith('.JPEG')).sort()[1];
  await page.setInputFiles('#upload-input', imageFile(`upload/${file}`));
  await page.waitForSelector('#token-dialog[open]');
  await page.keyboard.press('Escape');
  await page.waitForSelector('.notice:has-text("Nothing was added")');
  assert.equal(await images(), before);
});
