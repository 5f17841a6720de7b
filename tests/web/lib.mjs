/*
 * lib.mjs - shared helpers of the web tests: launch Debian's Chromium
 * through playwright-core, open the page of the server under test, take
 * screenshots into the test output directory.
 *
 * Environment (set by tests/e2e_web.sh):
 *   CLIPDEX_WEB_URL    base URL of the running `clipdex serve`
 *   CLIPDEX_WEB_TOKEN  its write token
 *   CLIPDEX_WEB_SHOTS  directory for screenshots
 *   CLIPDEX_WEB_DATA   directory of test images (formats/ and imagenet/)
 */
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';

export const BASE = process.env.CLIPDEX_WEB_URL;
export const TOKEN = process.env.CLIPDEX_WEB_TOKEN || '';
export const SHOTS = process.env.CLIPDEX_WEB_SHOTS || path.resolve('test-output');
export const DATA = process.env.CLIPDEX_WEB_DATA;
if (!BASE || !DATA) throw new Error('run through tests/e2e_web.sh (CLIPDEX_WEB_URL and CLIPDEX_WEB_DATA are not set)');

/* Flags: no sandbox (containers), no GPU, and nothing that phones home
 * (this machine's closed network refuses those connections).  launch()
 * gives every browser a fresh temporary profile (--user-data-dir) and
 * removes it on close. */
export async function launch() {
  return chromium.launch({
    executablePath: process.env.CLIPDEX_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    timeout: 60_000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/* A new page (fresh context: own storage) with console errors collected. */
export async function openPage(browser, { path: p = '/', viewport = { width: 1280, height: 860 }, colorScheme = 'light' } = {}) {
  const context = await browser.newContext({ viewport, colorScheme, baseURL: BASE });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.errors = [];
  page.on('pageerror', (err) => page.errors.push(String(err)));
  await page.goto(p);
  return page;
}

export async function shot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), animations: 'disabled' });
}

/* Wait until the grid shows loaded results (no skeleton) and every visible
 * thumbnail has finished loading; returns the tiles' image ids. */
export async function waitForResults(page) {
  await page.waitForSelector('#grid:not([hidden]):not(.skeleton) .tile');
  await page.waitForFunction(() => [...document.querySelectorAll('#grid img')]
    .filter((img) => img.getBoundingClientRect().top < innerHeight)
    .every((img) => img.complete));
  return page.$$eval('#grid .tile', (tiles) => tiles.map((t) => Number(t.dataset.id)));
}

export async function summary(page) {
  return (await page.textContent('#summary')).replace(/\s+/g, ' ').trim();
}

export const imageFile = (rel) => path.join(DATA, rel);
