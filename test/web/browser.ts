/** Chromium for the page's tests: one launch per file, a fresh context per test. */
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';

/** Debian's chromium, headless, without the background chatter. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** An opened page: CSP violations and page errors are collected, and every enqueue body. */
export interface OpenedPage {
  context: BrowserContext;
  page: Page;
  problems: string[];
  enqueues: string[];
}

/** A fresh context and page on `url`, once the page says it is ready. */
export async function openPage(
  browser: Browser,
  url: string,
  viewport = { width: 1100, height: 900 },
): Promise<OpenedPage> {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
  const page = await context.newPage();
  const problems: string[] = [];
  const enqueues: string[] = [];
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    if (/Content Security Policy|Refused to/i.test(msg.text())) problems.push(msg.text());
  });
  page.on('request', (req) => {
    if (new URL(req.url()).pathname === '/enqueue') enqueues.push(req.postData() ?? '');
  });
  await page.goto(url);
  await page.waitForSelector('html[data-ready="true"][data-server="known"]');
  return { context, page, problems, enqueues };
}

/** The newest result card. */
export const newestCard = (page: Page) => page.locator('#results > li').first();
