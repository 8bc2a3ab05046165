/**
 * The creative loop on the web page, in real Chromium against the real relay + worker: a job of
 * four as a grid, U/V on one image of it (the page sends its own copy back through
 * `POST /uploads`), an image chosen, dropped or pasted into the form, the errors for files that
 * cannot be used, and the withheld line when output safety blocks some of a job's images.
 * The generator is the deterministic demo one, wrapped to record what each call was given.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GenerateOptions, GenerateRequest, Generator } from '../../worker/generator.ts';
import { DemoGenerator } from '../../worker/generators/demo.ts';
import { createNsfwClassifier } from '../../worker/safety/classifier.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { launchChromium, newestCard, openPage } from './browser.ts';

const ARTIFACTS = join(import.meta.dirname, '../../.artifacts');

type Imagine = Awaited<ReturnType<typeof startTestImagine>>;

/** The demo generator, remembering every request it was given. */
class RecordingGenerator implements Generator {
  readonly name = 'demo';
  readonly calls: GenerateRequest[] = [];
  private readonly demo = new DemoGenerator();
  generate(request: GenerateRequest, options: GenerateOptions) {
    this.calls.push(request);
    return this.demo.generate(request, options);
  }
}

/** Raw RGB pixels of an encoded image, and its size. */
async function pixels(bytes: Buffer | Uint8Array) {
  const { data, info } = await sharp(bytes)
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

/** Mean absolute difference of two same-sized images' pixels (0–255). */
async function difference(a: Buffer | Uint8Array, b: Buffer | Uint8Array): Promise<number> {
  const [pa, pb] = await Promise.all([pixels(a), pixels(b)]);
  expect([pa.width, pa.height]).toEqual([pb.width, pb.height]);
  let sum = 0;
  for (let i = 0; i < pa.data.length; i++) sum += Math.abs(pa.data[i]! - pb.data[i]!);
  return sum / pa.data.length;
}

/** A PNG of two colour bands (not something the demo generator would paint). */
function bandsPng(width: number, height: number): Promise<Buffer> {
  const data = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 3;
      const top = y < height / 2;
      data[o] = top ? 230 : 20;
      data[o + 1] = top ? 180 : 60;
      data[o + 2] = top ? 30 : 200;
    }
  return sharp(data, { raw: { width, height, channels: 3 } })
    .png()
    .toBuffer();
}

const chooseCount = (page: Page, n: number) =>
  page.getByRole('radio', { name: n === 1 ? '1 image' : `${n} images` }).check();

/** Fill in the prompt (and seed), send, and wait for the newest card to finish. */
async function generate(page: Page, prompt: string, seed?: number) {
  if (seed !== undefined) await page.locator('#seed').fill(String(seed));
  await page.getByLabel('Prompt').fill(prompt);
  const before = await page.locator('#results > li').count();
  await page.getByLabel('Prompt').press('Enter');
  await expect.poll(() => page.locator('#results > li').count()).toBe(before + 1);
  await newestCard(page).and(page.locator('[data-state="done"]')).waitFor();
  // This card, whatever is added above it later.
  const jobId = await newestCard(page).getAttribute('data-job-id');
  return page.locator(`#results > li[data-job-id="${jobId}"]`);
}

/** The seeds the tiles of a card show, in order. */
const tileSeeds = (page: Page) =>
  newestCard(page)
    .locator('.tile')
    .evaluateAll((tiles) => tiles.map((t) => Number((t as HTMLElement).dataset.seed)));

describe('the creative loop in chromium', () => {
  let app: Imagine;
  let strict: Imagine;
  let browser: Browser;
  const generator = new RecordingGenerator();

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    app = await startTestImagine({ LIMIT_IMAGES_PER_USER: '1000' }, { generator });
    // Uploads of at most 4 KiB, and none fitting in the relay's memory.
    strict = await startTestImagine({ INPUT_IMAGE_MAX_BYTES: '4096', UPLOAD_BUFFER_BYTES: '0' });
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    await app?.stop();
    await strict?.stop();
  });

  it('a job of 4 is a grid of 4 with their seeds; each opens full size', async () => {
    const { context, page, problems, enqueues } = await openPage(browser, app.url);
    await chooseCount(page, 4);
    const card = await generate(page, 'A lighthouse on a cliff', 1000);
    expect(JSON.parse(enqueues.at(-1)!)).toEqual({
      prompt: 'A lighthouse on a cliff',
      aspect: '1:1',
      count: 4,
      seed: 1000,
    });
    await expect(card.locator('.frame.grid > .tile').count()).resolves.toBe(4);
    await expect(tileSeeds(page)).resolves.toEqual([1000, 1001, 1002, 1003]);
    await expect(card.locator('.card-meta').textContent()).resolves.toMatch(
      /^Seeds 1000, 1001, 1002, 1003 · 1024 × 1024 · demo$/,
    );
    const sizes = await card
      .locator('img.result-image')
      .evaluateAll((imgs: HTMLImageElement[]) =>
        Promise.all(imgs.map((i) => i.decode().then(() => `${i.naturalWidth}x${i.naturalHeight}`))),
      );
    expect(sizes).toEqual(['1024x1024', '1024x1024', '1024x1024', '1024x1024']);
    // Four different pictures, each with alt text saying which it is.
    const alts = await card
      .locator('img.result-image')
      .evaluateAll((imgs) => imgs.map((i) => (i as HTMLImageElement).alt));
    expect(alts).toEqual([1, 2, 3, 4].map((n) => `A lighthouse on a cliff (image ${n} of 4)`));
    // The seeds are the generator's own: one call, four seeds.
    expect(generator.calls.at(-1)).toMatchObject({
      task: 'generate',
      seeds: [1000, 1001, 1002, 1003],
    });
    // Image 3 opens full size, with its seed and a download of it.
    await card.getByRole('button', { name: 'Image 3 of 4, seed 1002: open full size' }).click();
    const viewer = page.getByRole('dialog', { name: 'Full-size image' });
    await viewer.waitFor();
    await expect(viewer.locator('.viewer-caption').textContent()).resolves.toBe(
      'Image 3 of 4 · seed 1002 · 1024 × 1024',
    );
    await expect(
      viewer.getByRole('link', { name: 'Download' }).getAttribute('download'),
    ).resolves.toBe('imagine-1002.png');
    await viewer.getByRole('button', { name: 'Close' }).click();
    await expect(viewer.isHidden()).resolves.toBe(true);
    // U1–U4, V1–V4 and Re-roll under the grid.
    for (const n of [1, 2, 3, 4]) {
      await expect(
        card.getByRole('button', { name: `U${n}: upscale image ${n}` }).isEnabled(),
      ).resolves.toBe(true);
      await expect(
        card.getByRole('button', { name: `V${n}: vary image ${n} (strong)` }).count(),
      ).resolves.toBe(1);
    }
    await page.screenshot({ path: join(ARTIFACTS, 'web-grid.png'), fullPage: true });
    expect(problems).toEqual([]);
    await context.close();
  });

  it('U2 upscales image 2 (the page sends its own copy back); the 2048² result offers Vary and a further upscale to 4096²', async () => {
    const { context, page, problems, enqueues } = await openPage(browser, app.url);
    await chooseCount(page, 4);
    const grid = await generate(page, 'A harbour at noon', 2000);
    const jobId = await grid.getAttribute('data-job-id');
    const uploads: string[] = [];
    page.on('request', (req) => {
      if (new URL(req.url()).pathname === '/uploads')
        uploads.push(req.headers()['content-type'] ?? '');
    });
    const calls = generator.calls.length;
    await grid.getByRole('button', { name: 'U2: upscale image 2' }).click();
    await expect.poll(() => page.locator('#results > li').count()).toBe(2);
    const card = newestCard(page);
    await card.and(page.locator('[data-state="done"]')).waitFor();
    expect(uploads).toEqual(['image/png']);
    const sent = JSON.parse(enqueues.at(-1)!) as { input: { image: { url: string } } };
    expect(sent).toEqual({
      prompt: 'A harbour at noon',
      task: 'upscale',
      input: {
        image: { kind: 'url', url: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+\/inputs\//) },
        jobId,
        index: 1,
        seed: 2001,
        width: 1024,
        height: 1024,
      },
    });
    // The generator got image 2 itself (not 1, 3 or 4) as the input of an upscale.
    expect(generator.calls.length).toBe(calls + 1);
    const call = generator.calls.at(-1)!;
    expect(call).toMatchObject({ task: 'upscale', width: 2048, height: 2048, seeds: [2001] });
    const served = await Promise.all(
      [0, 1, 2, 3].map(async (i) =>
        Buffer.from(await (await fetch(`${app.url}/jobs/${jobId}/image?i=${i}`)).arrayBuffer()),
      ),
    );
    const diffs = await Promise.all(served.map((bytes) => difference(call.input!.bytes, bytes)));
    expect(diffs[1]).toBeLessThan(1);
    for (const i of [0, 2, 3]) expect(diffs[i]).toBeGreaterThan(10);
    // The result shows: one 2048² image, said to be an upscale of image 2.
    await expect(card.locator('.card-task').textContent()).resolves.toBe('Upscale 2× of image 2');
    const size = await card
      .locator('img.result-image')
      .evaluate((img: HTMLImageElement) =>
        img.decode().then(() => [img.naturalWidth, img.naturalHeight]),
      );
    expect(size).toEqual([2048, 2048]);
    await expect(tileSeeds(page)).resolves.toEqual([2001]);
    // Vary is offered, and a further upscale: LIMIT_IMAGE_SIDE (2048) applies to an upscale's
    // input, and 4096 is within the contract's upscale limit.
    await expect(card.getByRole('button', { name: 'Vary (Subtle)' }).count()).resolves.toBe(1);
    await expect(card.getByRole('button', { name: 'Vary (Strong)' }).count()).resolves.toBe(1);
    await expect(
      card.getByRole('button', { name: 'Upscale 2× (to 4096 × 4096)' }).count(),
    ).resolves.toBe(1);
    await expect(card.getByRole('button', { name: /^Re-roll/ }).count()).resolves.toBe(0);
    // Vary (Subtle) of the upscale: a vary of that 2048² image, at the subtle strength, making
    // as many images as the form says (one here, to spare the CPU).
    await chooseCount(page, 1);
    await card.getByRole('button', { name: 'Vary (Subtle)' }).click();
    await expect.poll(() => page.locator('#results > li').count()).toBe(3);
    await newestCard(page).and(page.locator('[data-state="done"]')).waitFor();
    expect(generator.calls.at(-1)).toMatchObject({
      task: 'vary',
      strength: 0.35,
      width: 2048,
      height: 2048,
      seeds: [expect.any(Number)],
    });
    await expect(newestCard(page).locator('.card-task').textContent()).resolves.toBe(
      'Vary (subtle) of the image',
    );
    expect(problems).toEqual([]);
    await context.close();
  });

  it('on Flux on Modal (upscales to 2048): U is offered only where twice the image fits, and says why not', async () => {
    const modal = await startTestImagine(
      { GENERATOR: 'modal', MODAL_FLUX_URL: 'http://127.0.0.1:9/', LIMIT_IMAGES_PER_USER: '1000' },
      { generator },
    );
    try {
      const { context, page, problems } = await openPage(browser, modal.url);
      await chooseCount(page, 2);
      await page.getByRole('radio', { name: '16:9' }).check();
      const wide = await generate(page, 'A wide harbour', 3000);
      for (const n of [1, 2]) {
        const u = wide.getByRole('button', { name: `U${n}: upscale image ${n}` });
        await expect(u.isDisabled()).resolves.toBe(true);
        await expect(u.getAttribute('title')).resolves.toBe(
          `Image ${n} cannot be upscaled here: twice its size (2688 × 1536) is over the 2048 pixels a side this server upscales to`,
        );
        await expect(
          wide.getByRole('button', { name: `V${n}: vary image ${n} (strong)` }).isEnabled(),
        ).resolves.toBe(true);
      }
      // A 1024² image becomes 2048²: offered.
      await chooseCount(page, 1);
      await page.getByRole('radio', { name: '1:1' }).check();
      const square = await generate(page, 'A square harbour', 3100);
      await expect(
        square.getByRole('button', { name: 'Upscale 2× (to 2048 × 2048)' }).isEnabled(),
      ).resolves.toBe(true);
      expect(problems).toEqual([]);
      await context.close();
    } finally {
      await modal.stop();
    }
  });

  it('V3 with Strong varies image 3 into a new grid; Re-roll is the same prompt with new seeds', async () => {
    const { context, page, problems, enqueues } = await openPage(browser, app.url);
    await chooseCount(page, 4);
    const grid = await generate(page, 'A fox in the snow', 3000);
    const jobId = await grid.getAttribute('data-job-id');
    await grid.getByRole('radio', { name: 'Subtle' }).check();
    await grid.getByRole('radio', { name: 'Strong' }).check();
    await grid.getByRole('button', { name: 'V3: vary image 3 (strong)' }).click();
    await expect.poll(() => page.locator('#results > li').count()).toBe(2);
    const card = newestCard(page);
    await card.and(page.locator('[data-state="done"]')).waitFor();
    expect(JSON.parse(enqueues.at(-1)!)).toMatchObject({
      prompt: 'A fox in the snow',
      task: 'vary',
      strength: 'strong',
      count: 4,
      input: { jobId, index: 2, seed: 3002, width: 1024, height: 1024 },
    });
    const call = generator.calls.at(-1)!;
    expect(call).toMatchObject({ task: 'vary', strength: 0.75, width: 1024, height: 1024 });
    expect(call.seeds).toHaveLength(4);
    const third = Buffer.from(
      await (await fetch(`${app.url}/jobs/${jobId}/image?i=2`)).arrayBuffer(),
    );
    expect(await difference(call.input!.bytes, third)).toBeLessThan(1);
    await expect(card.locator('.card-task').textContent()).resolves.toBe(
      'Vary (strong) of image 3',
    );
    await expect(card.locator('.frame.grid > .tile').count()).resolves.toBe(4);
    // Re-roll of the first grid: same prompt, no seed (the server picks new ones).
    await grid.getByRole('button', { name: /^Re-roll/ }).click();
    await expect.poll(() => enqueues.length).toBe(3);
    expect(JSON.parse(enqueues.at(-1)!)).toEqual({
      prompt: 'A fox in the snow',
      aspect: '1:1',
      count: 4,
    });
    await newestCard(page).and(page.locator('[data-state="done"]')).waitFor();
    const seeds = await tileSeeds(page);
    expect(seeds).toHaveLength(4);
    expect(seeds[0]).not.toBe(3000);
    expect(problems).toEqual([]);
    await context.close();
  });

  it('an image chosen in the form reaches the generator as an image-to-image job at the slider strength', async () => {
    const { context, page, problems, enqueues } = await openPage(browser, app.url);
    const png = await bandsPng(320, 192);
    await page.setInputFiles('#image-file', {
      name: 'bands.png',
      mimeType: 'image/png',
      buffer: png,
    });
    const chosen = page.locator('#image-chosen');
    await chosen.waitFor();
    await expect(page.getByAltText('Your image: bands.png').isVisible()).resolves.toBe(true);
    await expect(page.locator('#image-name').textContent()).resolves.toBe('bands.png · 320 × 192');
    // The aspect choice does not apply: the result keeps the image's shape.
    await expect(page.getByRole('radio', { name: '16:9' }).isDisabled()).resolves.toBe(true);
    await page.getByLabel(/^Strength/).fill('0.5');
    await expect(page.locator('#strength-value').textContent()).resolves.toBe('0.50 · a balance');
    await chooseCount(page, 2);
    const card = await generate(page, 'A sunset over the sea', 4000);
    const sent = JSON.parse(enqueues.at(-1)!);
    expect(sent).toEqual({
      prompt: 'A sunset over the sea',
      task: 'vary',
      count: 2,
      strength: 0.5,
      seed: 4000,
      input: {
        image: { kind: 'url', url: expect.stringMatching(/\/inputs\//) },
        width: 320,
        height: 192,
      },
    });
    const call = generator.calls.at(-1)!;
    expect(call).toMatchObject({
      task: 'vary',
      strength: 0.5,
      width: 320,
      height: 192,
      seeds: [4000, 4001],
    });
    expect(await difference(call.input!.bytes, png)).toBeLessThan(1);
    await expect(card.locator('.card-task').textContent()).resolves.toBe(
      'Vary (strength 0.50) of your image',
    );
    // The result differs from a plain generate of the same prompt and seed.
    const plain = await generator.generate(
      {
        task: 'generate',
        prompt: 'A sunset over the sea',
        width: 320,
        height: 192,
        seeds: [4000],
        steps: call.steps,
      },
      { signal: AbortSignal.timeout(10_000) },
    );
    const first = Buffer.from(
      await (
        await fetch(`${app.url}/jobs/${await card.getAttribute('data-job-id')}/image?i=0`)
      ).arrayBuffer(),
    );
    expect(await difference(first, plain[0]!.bytes)).toBeGreaterThan(5);
    // A 320×192 result can be upscaled, and its upscale again (1280×768 is within the limit).
    await card.getByRole('button', { name: 'U1: upscale image 1' }).click();
    await expect.poll(() => page.locator('#results > li').count()).toBe(2);
    await newestCard(page).and(page.locator('[data-state="done"]')).waitFor();
    await expect(
      newestCard(page).getByRole('button', { name: 'Upscale 2× (to 1280 × 768)' }).count(),
    ).resolves.toBe(1);
    // Remove: the form is back to a plain prompt.
    await page.getByRole('button', { name: 'Remove the image' }).click();
    await expect(chosen.isHidden()).resolves.toBe(true);
    await expect(page.getByRole('radio', { name: '16:9' }).isEnabled()).resolves.toBe(true);
    await expect(page.evaluate(() => document.activeElement?.id)).resolves.toBe('image-file');
    await generate(page, 'A sunset over the sea', 4000);
    expect(JSON.parse(enqueues.at(-1)!)).toEqual({
      prompt: 'A sunset over the sea',
      aspect: '1:1',
      count: 2,
      seed: 4000,
    });
    expect(problems).toEqual([]);
    await context.close();
  });

  it('an image dropped on the form, or pasted, is taken as the input too', async () => {
    const { context, page, problems } = await openPage(browser, app.url);
    const dropped = await bandsPng(256, 256);
    // A fresh DataTransfer per event, as a real drag gives.
    const transfer = () =>
      page.evaluateHandle((b64) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], 'dropped.png', { type: 'image/png' }));
        return dt;
      }, dropped.toString('base64'));
    await page.locator('#composer').dispatchEvent('dragover', { dataTransfer: await transfer() });
    await expect(page.locator('#image-drop').getAttribute('class')).resolves.toContain('dragging');
    await page.locator('#composer').dispatchEvent('drop', { dataTransfer: await transfer() });
    // The file is decoded (to check it and read its size) before it is shown.
    await expect
      .poll(() => page.locator('#image-name').textContent())
      .toBe('dropped.png · 256 × 256');
    await chooseCount(page, 1);
    await generate(page, 'A dropped picture');
    expect(generator.calls.at(-1)).toMatchObject({ task: 'vary', width: 256, height: 256 });
    expect(await difference(generator.calls.at(-1)!.input!.bytes, dropped)).toBeLessThan(1);

    const pasted = await bandsPng(192, 320);
    await page.evaluate((b64) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], 'image.png', { type: 'image/png' }));
      document
        .getElementById('prompt')!
        .dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true }));
    }, pasted.toString('base64'));
    await expect
      .poll(() => page.locator('#image-name').textContent())
      .toBe('image.png · 192 × 320');
    await generate(page, 'A pasted picture');
    expect(generator.calls.at(-1)).toMatchObject({ task: 'vary', width: 192, height: 320 });
    expect(await difference(generator.calls.at(-1)!.input!.bytes, pasted)).toBeLessThan(1);
    expect(problems).toEqual([]);
    await context.close();
  });

  it('says why a file cannot be used: not an image, another format, unreadable, too big, refused', async () => {
    const { context, page, enqueues } = await openPage(browser, strict.url);
    const error = page.getByRole('alert');
    const choose = (name: string, mimeType: string, buffer: Buffer) =>
      page.setInputFiles('#image-file', { name, mimeType, buffer });

    await choose('notes.txt', 'text/plain', Buffer.from('just some words'));
    await expect
      .poll(() => error.textContent())
      .toBe('“notes.txt” is not an image. Choose a PNG, JPEG or WebP image.');
    await expect(page.locator('#image-chosen').isHidden()).resolves.toBe(true);

    const gif = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#f00' } })
      .gif()
      .toBuffer();
    await choose('anim.gif', 'image/gif', gif);
    await expect
      .poll(() => error.textContent())
      .toBe('“anim.gif” is a GIF image; this server takes PNG, JPEG or WebP images.');

    await choose(
      'broken.png',
      'image/png',
      Buffer.from('\x89PNG\r\n\x1a\nnot really a png at all'),
    );
    await expect
      .poll(() => error.textContent())
      .toBe('“broken.png” could not be read as an image. Choose a PNG, JPEG or WebP image.');

    // Over the relay's INPUT_IMAGE_MAX_BYTES (4 KiB here): the page says the limit.
    const noise = await sharp(randomBytes(64 * 64 * 3), {
      raw: { width: 64, height: 64, channels: 3 },
    })
      .png()
      .toBuffer();
    expect(noise.length).toBeGreaterThan(4096);
    await choose('big.png', 'image/png', noise);
    await expect
      .poll(() => error.textContent())
      .toBe(
        `“big.png” is ${Math.round(noise.length / 1024)} KB; the largest image this server takes is 4 KB.`,
      );

    // Small enough for the page, refused by the relay (no room in its upload memory here).
    const small = await bandsPng(16, 16);
    await choose('small.png', 'image/png', small);
    await expect.poll(() => error.isHidden()).toBe(true);
    await page.getByLabel('Prompt').fill('From a small image');
    await page.getByLabel('Prompt').press('Enter');
    await expect
      .poll(() => error.textContent())
      .toBe(
        'The server refused the image: the upload does not fit in memory; try a smaller image.',
      );
    await expect(page.locator('#results > li').count()).resolves.toBe(0);
    expect(enqueues).toEqual([]);
    await context.close();
  });
});

describe('images withheld by output safety', () => {
  const classifier = createNsfwClassifier();
  const PROMPT = 'a quiet harbour at noon';
  let app: Imagine | undefined;
  let browser: Browser | undefined;
  let seed = 0;
  let threshold = '';

  /** A seed whose four demo images score apart between the 2nd and 3rd: the threshold goes there. */
  beforeAll(async () => {
    const demo = new DemoGenerator();
    for (seed = 1; seed < 40; seed += 4) {
      const images = await demo.generate(
        {
          task: 'generate',
          prompt: PROMPT,
          width: 1024,
          height: 1024,
          seeds: [seed, seed + 1, seed + 2, seed + 3],
          steps: 4,
        },
        { signal: AbortSignal.timeout(30_000) },
      );
      const scores = await Promise.all(
        images.map((i) => classifier.classify(i.bytes).then((c) => c.score)),
      );
      const sorted = [...scores].sort((a, b) => a - b);
      if (sorted[2]! - sorted[1]! > 0.002) {
        threshold = ((sorted[1]! + sorted[2]!) / 2).toFixed(6);
        break;
      }
    }
    if (!threshold) throw new Error('no seed whose images score apart');
    app = await startTestImagine(
      { SAFETY: 'block', SAFETY_THRESHOLD: threshold, LIMIT_IMAGES_PER_USER: '1000' },
      { classifier },
    );
    browser = await launchChromium();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await app?.stop();
  });

  it('a job of 4 with 2 withheld shows the 2 delivered and says 2 of 4 were withheld', async () => {
    const { context, page, problems } = await openPage(browser!, app!.url);
    await chooseCount(page, 4);
    const card = await generate(page, PROMPT, seed);
    await expect(card.locator('img.result-image').count()).resolves.toBe(2);
    await expect(card.locator('.tile.pending').count()).resolves.toBe(0);
    await expect(card.locator('.card-meta').textContent()).resolves.toMatch(
      / · 2 of 4 images were withheld by this site's safety setting$/,
    );
    const seeds = await tileSeeds(page);
    expect(seeds).toHaveLength(2);
    for (const s of seeds) expect(s - seed).toBeGreaterThanOrEqual(0);
    // U and V for the two delivered images only.
    await expect(card.getByRole('button', { name: /^U\d/ }).count()).resolves.toBe(2);
    await expect(card.getByRole('button', { name: /^V\d/ }).count()).resolves.toBe(2);
    await page.screenshot({ path: join(ARTIFACTS, 'web-withheld.png'), fullPage: true });
    expect(problems).toEqual([]);
    await context.close();
  });
});
