/**
 * The web page in a real browser (Debian's chromium via playwright-core, headless) against the
 * real relay + worker on loopback, plus the CORS and WebSocket Origin checks over real sockets.
 */
import { mkdirSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { DemoGenerator } from '../../worker/generators/demo.ts';
import { HttpGenerator } from '../../worker/generators/http.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { launchChromium, newestCard, openPage as open } from './browser.ts';

const ARTIFACTS = join(import.meta.dirname, '../../.artifacts');

type Imagine = Awaited<ReturnType<typeof startTestImagine>>;

/** A stand-in GPU endpoint: answers 400 to the first call, then demo PNGs. */
async function startFakeGenerator(): Promise<{
  url: string;
  calls: number;
  close(): Promise<void>;
}> {
  const demo = new DemoGenerator();
  const state = { calls: 0 };
  const server = createServer(async (req, res) => {
    const body = await readBody(req);
    state.calls++;
    if (state.calls === 1) {
      res.writeHead(400, { 'content-type': 'text/plain' }).end('the model rejected this request');
      return;
    }
    const params = JSON.parse(body) as {
      prompt: string;
      width: number;
      height: number;
      seed: number;
      steps: number;
    };
    const [image] = await demo.generate(
      { task: 'generate', ...params, seeds: [params.seed] },
      { signal: AbortSignal.timeout(10_000) },
    );
    if (!image) throw new Error('no image');
    res.writeHead(200, { 'content-type': image.contentType }).end(image.bytes);
  });
  await listen(server);
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/generate`,
    get calls() {
      return state.calls;
    },
    close: () => close(server),
  };
}

/** A page on another origin, for cross-origin checks from the browser. */
async function startForeignSite(): Promise<{ origin: string; close(): Promise<void> }> {
  const server = createServer((_req, res) => {
    res
      .writeHead(200, { 'content-type': 'text/html' })
      .end('<!doctype html><title>elsewhere</title>');
  });
  await listen(server);
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => close(server),
  };
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      data += chunk;
    });
    req.on('end', () => resolve(data));
    req.on('error', reject);
  });
}

function listen(server: Server): Promise<void> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
}

/** Open a WebSocket with a given Origin; resolve with the handshake's outcome. */
function tryWebSocket(url: string, origin: string | undefined): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, origin ? { origin } : {});
    socket.on('open', () => {
      socket.close();
      resolve(101);
    });
    socket.on('unexpected-response', (_req, res) => {
      res.resume();
      socket.terminate();
      resolve(res.statusCode ?? 0);
    });
    socket.on('error', reject);
  });
}

async function enqueueFrom(url: string, origin: string | undefined, prompt = 'a test prompt') {
  return fetch(`${url}/enqueue`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(origin ? { origin } : {}) },
    body: JSON.stringify({ prompt }),
  });
}

describe('web page in chromium', () => {
  let app: Imagine;
  let failing: Imagine;
  let fakeGenerator: Awaited<ReturnType<typeof startFakeGenerator>>;
  let foreign: Awaited<ReturnType<typeof startForeignSite>>;
  let browser: Browser;

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    fakeGenerator = await startFakeGenerator();
    foreign = await startForeignSite();
    // Jobs of several images each: the per-client image budget is not what these tests are about.
    app = await startTestImagine({ LIMIT_IMAGES_PER_USER: '1000' });
    failing = await startTestImagine(
      // The stand-in endpoint answers one image per call: one image per job here.
      { ALLOWED_ORIGINS: foreign.origin, LIMIT_IMAGES_PER_JOB: '1' },
      {
        generator: new HttpGenerator({
          name: 'http',
          url: fakeGenerator.url,
          timeoutMs: 10_000,
          maxBytes: 20 * 1024 * 1024,
        }),
      },
    );
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    await app?.stop();
    await failing?.stop();
    await fakeGenerator?.close();
    await foreign?.close();
  });

  const openPage = (url: string, viewport?: { width: number; height: number }) =>
    open(browser, url, viewport);

  /** Choose how many images the form asks for. */
  const chooseCount = (page: Page, n: number) =>
    page.getByRole('radio', { name: n === 1 ? '1 image' : `${n} images` }).check();

  /** Record every data-state the newest card passes through. */
  async function recordStates(page: Page): Promise<void> {
    await page.evaluate(() => {
      const seen: string[] = [];
      (window as unknown as { states: string[] }).states = seen;
      const list = document.getElementById('results')!;
      new MutationObserver(() => {
        const state = (list.firstElementChild as HTMLElement | null)?.dataset.state;
        if (state && seen.at(-1) !== state) seen.push(state);
      }).observe(list, { subtree: true, childList: true, attributes: true });
    });
  }

  it('type a prompt and press Enter: the status moves on and the 16:9 image arrives', async () => {
    const { context, page, problems, enqueues } = await openPage(app.url);
    await expect(page.locator('#demo-notice').isVisible()).resolves.toBe(true);
    await page.getByRole('radio', { name: '16:9' }).check();
    await chooseCount(page, 1);
    await recordStates(page);
    await page.getByLabel('Prompt').fill('A fox in space, watercolour');
    await page.getByLabel('Prompt').press('Enter');

    const card = newestCard(page);
    await card.locator('img.result-image').waitFor();
    const states = await page.evaluate(() => (window as unknown as { states: string[] }).states);
    expect(states[0]).toBe('sending');
    expect(states).toContain('queued');
    expect(states.at(-1)).toBe('done');
    await expect(card.getAttribute('data-via')).resolves.toBe('websocket');
    await expect(card.locator('.transport-note').isHidden()).resolves.toBe(true);
    await expect(card.getByRole('status').textContent()).resolves.toMatch(/^Done in \d/);

    const image = await card
      .locator('img.result-image')
      .evaluate((img: HTMLImageElement) =>
        img.decode().then(() => ({ src: img.src, w: img.naturalWidth, h: img.naturalHeight })),
      );
    expect(image.src.startsWith('blob:')).toBe(true);
    expect([image.w, image.h]).toEqual([1344, 768]);

    expect(enqueues).toHaveLength(1);
    const sent = JSON.parse(enqueues[0]!) as { prompt: string; aspect: string; seed?: number };
    expect(sent).toEqual({ prompt: 'A fox in space, watercolour', aspect: '16:9', count: 1 });
    const meta = await card.locator('.card-meta').textContent();
    const seed = /Seed (\d+)/.exec(meta ?? '')?.[1];
    expect(seed).toBeDefined();
    await expect(
      card.getByRole('link', { name: 'Download' }).getAttribute('download'),
    ).resolves.toBe(`imagine-${seed}.png`);

    // "Re-roll": same prompt, new seed, stacked on top of the first result.
    await card.getByRole('button', { name: /^Re-roll/ }).click();
    await page.locator('#results > li[data-state="done"]').nth(1).waitFor();
    await expect(page.locator('#results > li').count()).resolves.toBe(2);
    const again = JSON.parse(enqueues[1]!) as { prompt: string; aspect: string; seed?: number };
    expect(again).toEqual({ prompt: 'A fox in space, watercolour', aspect: '16:9', count: 1 });

    expect(problems).toEqual([]);
    await page.screenshot({ path: join(ARTIFACTS, 'web-desktop.png'), fullPage: true });
    await context.close();
  });

  it('offers a model menu only when the server offers models, and sends the one chosen', async () => {
    const plain = await openPage(app.url);
    await expect(plain.page.locator('#model-field').isHidden()).resolves.toBe(true);
    await plain.context.close();

    const offering = await startTestImagine({ MODELS: 'flux1-schnell,sdxl-base' });
    try {
      const { context, page, problems, enqueues } = await openPage(offering.url);
      const menu = page.getByLabel('Model');
      await menu.waitFor();
      await expect(menu.locator('option').allTextContents()).resolves.toEqual([
        'flux1-schnell',
        'sdxl-base',
      ]);
      await menu.selectOption('sdxl-base');
      await chooseCount(page, 1);
      await page.getByLabel('Prompt').fill('A fox in space');
      await page.getByLabel('Prompt').press('Enter');
      await newestCard(page).locator('img.result-image').waitFor();
      expect(JSON.parse(enqueues[0]!)).toMatchObject({
        prompt: 'A fox in space',
        model: 'sdxl-base',
      });
      expect(problems).toEqual([]);
      await context.close();
    } finally {
      await offering.stop();
    }
  });

  it('images output safety flags arrive blurred behind a click each, with the prompt as alt text', async () => {
    const flagging = await startTestImagine({ SAFETY: 'spoiler', SAFETY_THRESHOLD: '0' });
    try {
      const { context, page, problems } = await openPage(flagging.url);
      await chooseCount(page, 2);
      await page.getByLabel('Prompt').fill('A lighthouse at dusk');
      await page.getByLabel('Prompt').press('Enter');
      const card = newestCard(page);
      await page.locator('#results > li[data-state="done"]').waitFor();
      const images = card.locator('img.result-image');
      await expect(images.count()).resolves.toBe(2);
      await expect(images.nth(0).getAttribute('alt')).resolves.toBe(
        'A lighthouse at dusk (image 1 of 2)',
      );
      const filter = (i: number) => images.nth(i).evaluate((el) => getComputedStyle(el).filter);
      await expect(filter(0)).resolves.toBe('blur(28px)');
      await expect(filter(1)).resolves.toBe('blur(28px)');
      await page.screenshot({ path: join(ARTIFACTS, 'web-spoiler.png') });
      // Each image is revealed on its own click; the first click never opens the full view.
      await card.getByRole('button', { name: /^Image 2 of 2, flagged.*show the image/ }).click();
      // Revealed with the page's usual fade-in (from blur(8px) to none in 0.4 s).
      await expect.poll(() => filter(1), { timeout: 5000 }).toBe('none');
      await expect(filter(0)).resolves.toBe('blur(28px)');
      await expect(page.locator('dialog.viewer').isVisible()).resolves.toBe(false);
      // Once revealed, a click opens it full size.
      await card.getByRole('button', { name: /^Image 2 of 2, seed \d+: open full size/ }).click();
      await expect(page.locator('dialog.viewer').isVisible()).resolves.toBe(true);
      expect(problems).toEqual([]);
      await context.close();
    } finally {
      await flagging.stop();
    }
  });

  it('remembers aspect, image count, vary strength and image strength in this browser only', async () => {
    const { context, page, enqueues } = await openPage(app.url);
    await expect(page.getByRole('radio', { name: '1:1' }).isChecked()).resolves.toBe(true);
    await expect(page.getByRole('radio', { name: '4 images' }).isChecked()).resolves.toBe(true);
    await page.getByRole('radio', { name: '3:2' }).check();
    await chooseCount(page, 2);
    // The strength slider shows once an image is chosen.
    const png = await sharp({
      create: { width: 64, height: 64, channels: 3, background: { r: 200, g: 40, b: 90 } },
    })
      .png()
      .toBuffer();
    await page.setInputFiles('#image-file', {
      name: 'red.png',
      mimeType: 'image/png',
      buffer: png,
    });
    await page.getByLabel(/^Strength/).fill('0.3');
    await page.reload();
    await page.waitForSelector('html[data-ready="true"]');
    await expect(page.getByRole('radio', { name: '3:2' }).isChecked()).resolves.toBe(true);
    await expect(page.getByRole('radio', { name: '2 images' }).isChecked()).resolves.toBe(true);
    await expect(page.locator('#strength').inputValue()).resolves.toBe('0.3');
    await page.getByLabel('Prompt').fill('A remembered shape');
    await page.getByLabel('Prompt').press('Enter');
    await expect.poll(() => enqueues.length).toBe(1);
    expect(JSON.parse(enqueues[0]!)).toMatchObject({ aspect: '3:2', count: 2 });
    // The vary strength chosen on a card is the one the next card starts with.
    await page.locator('#results > li[data-state="done"]').waitFor();
    const strong = newestCard(page).getByRole('radio', { name: 'Strong' });
    await expect(strong.isChecked()).resolves.toBe(true);
    await newestCard(page).getByRole('radio', { name: 'Subtle' }).check();
    await expect(
      newestCard(page).getByRole('button', { name: /^V1/ }).getAttribute('aria-label'),
    ).resolves.toBe('V1: vary image 1 (subtle)');
    await page.reload();
    await page.waitForSelector('html[data-ready="true"]');
    await page.getByLabel('Prompt').fill('A remembered shape');
    await page.getByLabel('Prompt').press('Enter');
    await page.locator('#results > li[data-state="done"]').waitFor();
    await expect(newestCard(page).getByRole('radio', { name: 'Subtle' }).isChecked()).resolves.toBe(
      true,
    );
    // A stale or hostile entry is ignored, never a broken form.
    await page.evaluate(() =>
      localStorage.setItem(
        'imagine.prefs.v1',
        '{"aspect":"<b>","count":9,"vary":"wild","strength":7}',
      ),
    );
    await page.reload();
    await page.waitForSelector('html[data-ready="true"]');
    await expect(page.getByRole('radio', { name: '1:1' }).isChecked()).resolves.toBe(true);
    await expect(page.getByRole('radio', { name: '4 images' }).isChecked()).resolves.toBe(true);
    await expect(page.locator('#strength').inputValue()).resolves.toBe('0.6');
    await context.close();
    // Another browser profile starts from the defaults.
    const other = await openPage(app.url);
    await expect(other.page.getByRole('radio', { name: '1:1' }).isChecked()).resolves.toBe(true);
    await expect(other.page.getByRole('radio', { name: '4 images' }).isChecked()).resolves.toBe(
      true,
    );
    await other.context.close();
  });

  it('fits a phone-width screen and works from the keyboard alone', async () => {
    const { context, page, problems } = await openPage(app.url, { width: 390, height: 844 });
    await page.keyboard.press('Tab'); // skip link
    await page.keyboard.press('Tab');
    await expect(page.evaluate(() => document.activeElement?.id)).resolves.toBe('prompt');
    await page.keyboard.type('A quiet harbour at dawn');
    await page.keyboard.press('Tab'); // the image input
    await expect(page.evaluate(() => document.activeElement?.id)).resolves.toBe('image-file');
    await page.keyboard.press('Tab'); // aspect radios
    await page.keyboard.press('ArrowRight'); // 1:1 → 16:9
    await page.keyboard.press('ArrowRight'); // → 9:16
    await expect(page.getByRole('radio', { name: '9:16' }).isChecked()).resolves.toBe(true);
    await page.keyboard.press('Tab'); // image count radios
    await page.keyboard.press('ArrowRight'); // 4 → 1
    await expect(page.getByRole('radio', { name: '1 image' }).isChecked()).resolves.toBe(true);
    await page.keyboard.press('Tab'); // seed
    await page.keyboard.type('1234');
    await page.keyboard.press('Enter');
    const card = newestCard(page);
    await card.locator('img.result-image').waitFor();
    // The image opens full size from the keyboard, and Escape brings focus back to it.
    await page.keyboard.press('Tab'); // Generate
    await page.keyboard.press('Tab'); // the image
    await expect(
      page.evaluate(() => document.activeElement?.getAttribute('aria-label')),
    ).resolves.toBe('The image, seed 1234: open full size');
    await page.keyboard.press('Enter');
    const viewer = page.getByRole('dialog', { name: 'Full-size image' });
    await viewer.waitFor();
    await expect(viewer.locator('img').getAttribute('alt')).resolves.toBe(
      'A quiet harbour at dawn',
    );
    await page.keyboard.press('Escape');
    await expect(viewer.isHidden()).resolves.toBe(true);
    await expect(
      page.evaluate(() => document.activeElement?.getAttribute('aria-label')),
    ).resolves.toBe('The image, seed 1234: open full size');
    const size = await card
      .locator('img.result-image')
      .evaluate((img: HTMLImageElement) =>
        img.decode().then(() => [img.naturalWidth, img.naturalHeight]),
      );
    expect(size).toEqual([768, 1344]);
    await expect(card.locator('.card-meta').textContent()).resolves.toContain('Seed 1234');
    // Nothing wider than the screen.
    const overflow = await page.evaluate(
      () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
    );
    expect(overflow).toBe(0);
    expect(problems).toEqual([]);
    await page.screenshot({ path: join(ARTIFACTS, 'web-phone.png'), fullPage: true });
    await context.close();
  });

  it('WebSocket refused: the images still arrive by polling, and the page says so', async () => {
    const { context, page, problems } = await openPage(app.url);
    // Every WebSocket to /ws is refused: closed before the server ever sees it.
    let refused = 0;
    await page.routeWebSocket(/\/ws\?jobId=/, (ws) => {
      refused++;
      ws.close({ code: 1011, reason: 'refused by the test' });
    });
    const polls: string[] = [];
    page.on('request', (req) => {
      const url = new URL(req.url());
      if (url.pathname.startsWith('/jobs/')) polls.push(url.pathname + url.search);
    });
    await chooseCount(page, 2);
    await page.getByLabel('Seed').fill('500');
    await page.getByLabel('Prompt').fill('A lighthouse in fog');
    await page.getByLabel('Prompt').press('Enter');
    const card = newestCard(page);
    await page.locator('#results > li[data-state="done"]').waitFor({ timeout: 20_000 });
    await expect(card.getAttribute('data-via')).resolves.toBe('polling');
    await expect(card.locator('.transport-note').textContent()).resolves.toMatch(/checking/i);
    const images = await card
      .locator('img.result-image')
      .evaluateAll((imgs: HTMLImageElement[]) =>
        Promise.all(
          imgs.map((img) => img.decode().then(() => [img.naturalWidth, img.naturalHeight])),
        ),
      );
    expect(images).toEqual([
      [1024, 1024],
      [1024, 1024],
    ]);
    await expect(
      card
        .locator('.tile')
        .evaluateAll((tiles) => tiles.map((t) => (t as HTMLElement).dataset.seed)),
    ).resolves.toEqual(['500', '501']);
    expect(polls.some((p) => /^\/jobs\/[\w-]+$/.test(p))).toBe(true);
    expect(polls.filter((p) => /^\/jobs\/[\w-]+\/image\?i=[01]$/.test(p)).sort()).toEqual([
      expect.stringMatching(/i=0$/),
      expect.stringMatching(/i=1$/),
    ]);
    // The first attempt and every reconnect (with backoff) were tried before polling.
    expect(refused).toBe(4);
    expect(problems).toEqual([]);
    await context.close();
  });

  it('empty and over-long prompts show an error and enqueue nothing', async () => {
    const { context, page, enqueues } = await openPage(app.url);
    const prompt = page.getByLabel('Prompt');
    const error = page.getByRole('alert');

    await prompt.press('Enter');
    await expect(error.textContent()).resolves.toMatch(/prompt is empty/);
    await expect(prompt.getAttribute('aria-invalid')).resolves.toBe('true');

    await prompt.fill('x'.repeat(1001));
    await expect(page.locator('#prompt-count').textContent()).resolves.toBe('1,001 / 1,000');
    await page.getByRole('button', { name: 'Generate' }).click();
    await expect(error.textContent()).resolves.toMatch(/1,001 characters; the limit is 1,000/);
    await expect(error.isVisible()).resolves.toBe(true);

    // Back under the limit, the error goes away as you type.
    await prompt.press('Backspace');
    await expect(error.isHidden()).resolves.toBe(true);

    await page.getByLabel(/Seed/).fill('-5');
    await prompt.press('Enter');
    await expect(error.textContent()).resolves.toMatch(/seed must be a whole number/);

    expect(enqueues).toEqual([]);
    await expect(page.locator('#results > li').count()).resolves.toBe(0);
    await context.close();
  });

  it('says what the server refused, and when the server cannot be reached', async () => {
    const { context, page, enqueues } = await openPage(app.url);
    const prompt = page.getByLabel('Prompt');
    const error = page.getByRole('alert');

    // Passes the page's checks, refused by the server's (control characters).
    await prompt.fill('a cat \u0007 with a bell');
    await prompt.press('Enter');
    await expect(error.textContent()).resolves.toMatch(
      /server did not accept this prompt: prompt contains control characters/,
    );
    expect(enqueues).toHaveLength(1);

    await page.route('**/enqueue', (route) =>
      route.fulfill({
        status: 429,
        headers: { 'content-type': 'application/json', 'retry-after': '42' },
        body: JSON.stringify({ error: { code: 'RATE_LIMITED', message: 'slow down' } }),
      }),
    );
    await prompt.fill('a cat with a bell');
    await prompt.press('Enter');
    await expect(error.textContent()).resolves.toMatch(/try again in 42 seconds/);

    await page.unroute('**/enqueue');
    await page.route('**/enqueue', (route) => route.abort('connectionrefused'));
    await prompt.press('Enter');
    await expect(error.textContent()).resolves.toMatch(/server cannot be reached/);
    await expect(page.locator('#results > li').count()).resolves.toBe(0);
    await context.close();
  });

  it('past the per-visitor image limit it says how many images are left, and when the rest come back', async () => {
    // The real relay's 429 (LIMIT_IMAGES_PER_USER counts images per address per hour).
    const limited = await startTestImagine({ LIMIT_IMAGES_PER_USER: '3' });
    try {
      const { context, page, enqueues } = await openPage(limited.url);
      const prompt = page.getByLabel('Prompt');
      const error = page.getByRole('alert');
      const cards = page.locator('#results > li');
      await chooseCount(page, 2);
      const left = page.locator('#quota-left');
      await expect(left.isHidden()).resolves.toBe(true);
      await prompt.fill('A lighthouse at dusk');
      await prompt.press('Enter');
      await expect.poll(() => cards.count()).toBe(1);
      // The 202 said what is left: the page says it under the form.
      await expect.poll(() => left.textContent()).toBe('1 of your 3 images per hour left.');
      await expect(left.isVisible()).resolves.toBe(true);
      // Two more would be four of three: one is left, and the page says so.
      await prompt.press('Enter');
      await expect
        .poll(() => error.textContent())
        .toMatch(
          /^You have 1 of your 3 images per hour left: ask for 1 or fewer, or for more in 1 hour \(at [^)]+\)\.$/,
        );
      expect(enqueues).toHaveLength(2);
      await expect(cards.count()).resolves.toBe(1);
      // One is within what is left.
      await chooseCount(page, 1);
      await prompt.press('Enter');
      await expect.poll(() => cards.count()).toBe(2);
      await expect(error.isHidden()).resolves.toBe(true);
      await expect
        .poll(() => left.textContent())
        .toMatch(/^That was the last of your 3 images per hour: more in (1 hour|59 minutes)\.$/);
      await prompt.press('Enter');
      await expect
        .poll(() => error.textContent())
        .toMatch(
          /^You have made your 3 images per hour\. You can make more in 1 hour \(at [^)]+\)\.$/,
        );
      // The refusal says what is left itself: the line under the form goes.
      await expect(left.isHidden()).resolves.toBe(true);
      await expect(cards.count()).resolves.toBe(2);
      await context.close();
    } finally {
      await limited.stop();
    }
  });

  it('a failed job shows its error, and "Try again" makes the image', async () => {
    const { context, page, problems } = await openPage(failing.url);
    await expect(page.locator('#demo-notice').isHidden()).resolves.toBe(true);
    const before = fakeGenerator.calls;
    await chooseCount(page, 1);
    await page.getByLabel('Prompt').fill('A red bicycle against a blue wall');
    await page.getByLabel('Prompt').press('Enter');
    const card = newestCard(page);
    await page.locator('#results > li[data-state="failed"]').waitFor();
    // A 4xx from the generator is its refusal of this very request (README, the generator contract).
    await expect(card.getAttribute('data-error-code')).resolves.toBe('GENERATOR_REJECTED');
    await expect(card.getByRole('status').textContent()).resolves.toMatch(
      /^The image generator refused this request/,
    );
    await expect(card.locator('.error-detail').textContent()).resolves.toContain(
      'the model rejected this request',
    );
    await page.screenshot({ path: join(ARTIFACTS, 'web-failed.png'), fullPage: true });

    await card.getByRole('button', { name: 'Try again' }).click();
    await card.locator('img.result-image').waitFor();
    await expect(card.getAttribute('data-state')).resolves.toBe('done');
    await expect(page.locator('#results > li').count()).resolves.toBe(1);
    expect(fakeGenerator.calls - before).toBe(2);
    expect(problems).toEqual([]);
    await context.close();
  });

  it('a page on another origin may call the API only when ALLOWED_ORIGINS lists it', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(foreign.origin);
    const call = (base: string) =>
      page.evaluate(async (url) => {
        try {
          const res = await fetch(`${url}/enqueue`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ prompt: 'from elsewhere' }),
          });
          return res.status;
        } catch {
          return 'blocked';
        }
      }, base);
    await expect(call(app.url)).resolves.toBe('blocked');
    await expect(call(failing.url)).resolves.toBe(202);
    await context.close();
  });
});

describe('Origin policy over real HTTP and WebSocket', () => {
  let app: Imagine;
  let listed: Imagine;
  beforeAll(async () => {
    app = await startTestImagine();
    listed = await startTestImagine({ ALLOWED_ORIGINS: 'https://app.example, https://b.example' });
  });
  afterAll(async () => {
    await app?.stop();
    await listed?.stop();
  });

  it('by default only the page’s own origin may enqueue or open a socket', async () => {
    const evil = await enqueueFrom(app.url, 'https://evil.example');
    expect(evil.status).toBe(403);
    expect(((await evil.json()) as { error: { code: string } }).error.code).toBe(
      'ORIGIN_NOT_ALLOWED',
    );
    expect(evil.headers.get('access-control-allow-origin')).toBeNull();

    const preflight = await fetch(`${app.url}/enqueue`, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://evil.example',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type',
      },
    });
    expect(preflight.headers.get('access-control-allow-origin')).toBeNull();

    const own = await enqueueFrom(app.url, app.url);
    expect(own.status).toBe(202);
    const { ws } = (await own.json()) as { ws: string };
    await expect(tryWebSocket(ws, 'https://evil.example')).resolves.toBe(403);
    await expect(tryWebSocket(ws, app.url)).resolves.toBe(101);
    // Not a browser (no Origin): curl, bots and workers are not affected.
    await expect(tryWebSocket(ws, undefined)).resolves.toBe(101);
    await expect(enqueueFrom(app.url, undefined).then((r) => r.status)).resolves.toBe(202);
  });

  it('listed origins get CORS headers and may open sockets; others are refused', async () => {
    const preflight = await fetch(`${listed.url}/enqueue`, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://b.example',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type',
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('https://b.example');
    expect(preflight.headers.get('access-control-allow-methods')).toContain('POST');

    const ok = await enqueueFrom(listed.url, 'https://app.example');
    expect(ok.status).toBe(202);
    expect(ok.headers.get('access-control-allow-origin')).toBe('https://app.example');
    expect(ok.headers.get('vary')).toMatch(/origin/i);
    const { ws } = (await ok.json()) as { ws: string };
    await expect(tryWebSocket(ws, 'https://app.example')).resolves.toBe(101);
    await expect(tryWebSocket(ws, 'https://c.example')).resolves.toBe(403);
    await expect(enqueueFrom(listed.url, 'https://c.example').then((r) => r.status)).resolves.toBe(
      403,
    );
  });

  it('serves the page with a strict CSP, revalidated HTML and immutable hashed assets', async () => {
    const fresh = await startTestImagine();
    try {
      const page = await fetch(`${fresh.url}/`);
      expect(page.status).toBe(200);
      const csp = page.headers.get('content-security-policy') ?? '';
      expect(csp).toContain("default-src 'none'");
      expect(csp).toContain("script-src 'self'");
      expect(csp).not.toContain('unsafe-inline');
      expect(page.headers.get('cache-control')).toBe('no-cache');
      const html = await page.text();
      expect(html).not.toMatch(/<script>|<style>| style=/);
      const script = /src="(\/assets\/app-[A-Z0-9]+\.js)"/.exec(html)?.[1];
      expect(script).toBeDefined();
      const asset = await fetch(`${fresh.url}${script}`);
      expect(asset.status).toBe(200);
      expect(asset.headers.get('content-type')).toMatch(/javascript/);
      expect(asset.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    } finally {
      await fresh.stop();
    }
  });
});
