/**
 * Live progress and Cancel on the web page (issue 11), in real Chromium against the real relay
 * and worker: the bar shows the generator's own progress (indeterminate before there is any),
 * the latest preview shows until the images come, Cancel on a queued job says Cancelled once
 * and the job never reaches the generator, and a cancel after the images says it was too late.
 * The generator is the demo one behind gates the test opens; its progress reports travel the
 * whole way (worker → signed progress push → relay → WebSocket) to the page.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GenerateOptions, GenerateRequest, Generator } from '../../worker/generator.ts';
import { DemoGenerator } from '../../worker/generators/demo.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { launchChromium, newestCard, openPage } from './browser.ts';

const ARTIFACTS = join(import.meta.dirname, '../../.artifacts');

type Imagine = Awaited<ReturnType<typeof startTestImagine>>;

/** A promise the test resolves when it chooses. */
class Gate {
  private waiters: Array<() => void> = [];
  private opened = 0;
  /** Wait for the next `open()` (or one already given). */
  wait(signal: AbortSignal): Promise<void> {
    if (this.opened > 0) {
      this.opened--;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      this.waiters.push(resolve);
      signal.addEventListener('abort', () => reject(signal.reason), { once: true });
    });
  }
  /** Let one waiter (present or next) through. */
  open(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.opened++;
  }
  get waiting(): number {
    return this.waiters.length;
  }
}

/** Steps a stepped job reports; the third carries a preview. */
const STEPS = 4;

/**
 * The demo generator, remembering every request. A request whose prompt is held waits at that
 * prompt's gate before it starts; one whose prompt is stepped reports each of {@link STEPS}
 * steps and waits at the step gate after each.
 */
class GatedGenerator implements Generator {
  readonly name = 'demo';
  readonly calls: GenerateRequest[] = [];
  readonly step = new Gate();
  private readonly gates = new Map<string, Gate>();
  private readonly stepped = new Set<string>();
  private readonly demo = new DemoGenerator();
  private preview: Buffer | undefined;

  /** Make jobs with this prompt wait until the gate returned is opened. */
  hold(prompt: string): Gate {
    const gate = new Gate();
    this.gates.set(prompt, gate);
    return gate;
  }

  /** Make jobs with this prompt report their steps, one per opening of `step`. */
  stepThrough(prompt: string): void {
    this.stepped.add(prompt);
  }

  /** Prompts whose generator call was aborted. */
  readonly aborted: string[] = [];

  async generate(request: GenerateRequest, options: GenerateOptions) {
    this.calls.push(request);
    options.signal.addEventListener('abort', () => this.aborted.push(request.prompt), {
      once: true,
    });
    await this.gates.get(request.prompt)?.wait(options.signal);
    if (this.stepped.has(request.prompt)) {
      this.preview ??= await sharp({
        create: { width: 64, height: 64, channels: 3, background: { r: 40, g: 120, b: 200 } },
      })
        .jpeg()
        .toBuffer();
      for (let step = 1; step <= STEPS; step++) {
        options.onProgress?.({
          step,
          steps: STEPS,
          ...(step === 3 ? { preview: { bytes: this.preview, contentType: 'image/jpeg' } } : {}),
        });
        await this.step.wait(options.signal);
      }
    }
    return this.demo.generate(request, options);
  }
}

const chooseCount = (page: Page, n: number) =>
  page.getByRole('radio', { name: n === 1 ? '1 image' : `${n} images` }).check();

/** The progress bar's value (undefined while indeterminate). */
const barValue = (page: Page, card = newestCard(page)) =>
  card.getByRole('progressbar').evaluate((bar) => ({
    now: bar.getAttribute('aria-valuenow'),
    indeterminate: bar.classList.contains('indeterminate'),
  }));

describe('progress and cancel in chromium', () => {
  let app: Imagine;
  let browser: Browser;
  const generator = new GatedGenerator();

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    // One job at a time, so a second one stays queued behind the first.
    // Every progress report forwarded as it comes (the test waits on each one anyway).
    app = await startTestImagine(
      { WORKER_CONCURRENCY: '1', LIMIT_IMAGES_PER_USER: '1000', PROGRESS_PUSH_MS: '20' },
      { generator },
    );
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    await app?.stop();
  });

  it('the bar follows the generator’s own progress to the end, the preview shows, and the image replaces it', async () => {
    const { context, page, problems } = await openPage(browser, app.url);
    await chooseCount(page, 1);
    const gate = generator.hold('A slow lighthouse');
    generator.stepThrough('A slow lighthouse');
    await page.getByLabel('Prompt').fill('A slow lighthouse');
    await page.getByLabel('Prompt').press('Enter');
    const card = newestCard(page);
    await card.and(page.locator('[data-state="generating"]')).waitFor();
    // Generating, nothing reported yet: indeterminate, no made-up percentage.
    await expect(barValue(page)).resolves.toEqual({ now: null, indeterminate: true });
    gate.open();
    for (const [step, percent] of [
      [1, '25'],
      [2, '50'],
      [3, '75'],
      [4, '100'],
    ] as const) {
      await expect.poll(() => barValue(page).then((v) => v.now), { timeout: 10_000 }).toBe(percent);
      await expect(card.getByRole('progressbar').getAttribute('aria-valuetext')).resolves.toBe(
        `${percent}% (step ${step} of ${STEPS})`,
      );
      if (step === 3) {
        const img = card.locator('img.preview-image');
        await img.waitFor();
        const size = await img.evaluate((i: HTMLImageElement) =>
          i.decode().then(() => [i.naturalWidth, i.naturalHeight]),
        );
        expect(size).toEqual([64, 64]);
        await page.screenshot({ path: join(ARTIFACTS, 'web-progress.png') });
      }
      // The status line is not re-announced on every step.
      await expect(card.getByRole('status').textContent()).resolves.toBe('Generating…');
      generator.step.open();
    }
    await card.and(page.locator('[data-state="done"]')).waitFor();
    await expect(card.locator('img.preview-image').count()).resolves.toBe(0);
    await expect(card.locator('img.result-image').count()).resolves.toBe(1);
    await expect(card.getByRole('button', { name: /^Cancel/ }).count()).resolves.toBe(0);
    expect(problems).toEqual([]);
    await context.close();
  });

  it('Cancel on a queued job says Cancelled once, and the job never reaches the generator', async () => {
    const { context, page, problems } = await openPage(browser, app.url);
    await chooseCount(page, 1);
    const calls = generator.calls.length;
    // The first job holds the only worker slot at the gate.
    const gate = generator.hold('The first in line');
    await page.getByLabel('Prompt').fill('The first in line');
    await page.getByLabel('Prompt').press('Enter');
    await newestCard(page).and(page.locator('[data-state="generating"]')).waitFor();
    const firstId = await newestCard(page).getAttribute('data-job-id');
    await page.getByLabel('Prompt').fill('The second in line');
    await page.getByLabel('Prompt').press('Enter');
    await expect.poll(() => page.locator('#results > li').count()).toBe(2);
    const second = newestCard(page);
    await second.and(page.locator('[data-state="queued"]')).waitFor();
    const secondId = await second.getAttribute('data-job-id');
    const queued = page.locator(`#results > li[data-job-id="${secondId}"]`);
    await expect(barValue(page, queued)).resolves.toEqual({ now: null, indeterminate: true });
    // Count every change of the card's status line.
    await queued.getByRole('status').evaluate((status) => {
      const said: string[] = [];
      (window as unknown as { said: string[] }).said = said;
      new MutationObserver(() => said.push(status.textContent ?? '')).observe(status, {
        childList: true,
        characterData: true,
        subtree: true,
      });
    });
    const deletes: number[] = [];
    page.on('response', (res) => {
      if (res.request().method() === 'DELETE') deletes.push(res.status());
    });
    await queued.getByRole('button', { name: 'Cancel: The second in line' }).click();
    await queued.and(page.locator('[data-state="cancelled"]')).waitFor();
    await expect(queued.getByRole('status').textContent()).resolves.toBe('Cancelled');
    expect(deletes).toEqual([200]);
    // The relay's own word on the socket came too; the card still said it once.
    const status = await (await fetch(`${app.url}/jobs/${secondId}`)).json();
    expect(status).toMatchObject({ state: 'cancelled' });
    await page.waitForTimeout(300);
    const said = await page.evaluate(() => (window as unknown as { said: string[] }).said);
    expect(said.filter((s) => s === 'Cancelled')).toHaveLength(1);
    await expect(queued.getByText('Cancelled', { exact: true }).count()).resolves.toBe(1);
    await expect(queued.getByRole('button', { name: /^Cancel/ }).count()).resolves.toBe(0);
    await expect(queued.getByRole('button', { name: /^Run again/ }).count()).resolves.toBe(1);
    // The first job goes on to its images; the cancelled one never reaches the generator (a job
    // sent after it, on the one worker slot, is made after the worker has passed it by).
    gate.open();
    await page.locator(`#results > li[data-job-id="${firstId}"][data-state="done"]`).waitFor();
    await page.getByLabel('Prompt').fill('The third in line');
    await page.getByLabel('Prompt').press('Enter');
    await expect.poll(() => page.locator('#results > li').count()).toBe(3);
    await newestCard(page).and(page.locator('[data-state="done"]')).waitFor();
    expect(generator.calls.slice(calls).map((c) => c.prompt)).toEqual([
      'The first in line',
      'The third in line',
    ]);
    expect(problems).toEqual([]);
    await context.close();
  });

  it('Cancel while generating says Cancelled and the generator call is aborted', async () => {
    const { context, page, problems } = await openPage(browser, app.url);
    await chooseCount(page, 1);
    const gate = generator.hold('Stopped midway');
    await page.getByLabel('Prompt').fill('Stopped midway');
    await page.getByLabel('Prompt').press('Enter');
    const card = newestCard(page);
    await card.and(page.locator('[data-state="generating"]')).waitFor();
    await card.getByRole('button', { name: 'Cancel: Stopped midway' }).click();
    await card.and(page.locator('[data-state="cancelled"]')).waitFor();
    await expect(card.getByRole('status').textContent()).resolves.toBe('Cancelled');
    // The worker learns it (its next push or poll) and aborts the call.
    await expect.poll(() => generator.aborted, { timeout: 10_000 }).toContain('Stopped midway');
    await expect(card.locator('img.result-image').count()).resolves.toBe(0);
    gate.open();
    expect(problems).toEqual([]);
    await context.close();
  });

  it('a cancel that arrives after the images says it was too late, and the images show', async () => {
    const { context, page, problems } = await openPage(browser, app.url);
    await chooseCount(page, 1);
    // Hold what the relay sends the page once the job is generating, as a slow link would.
    const held: Array<string | Buffer> = [];
    let holding = false;
    let toPage: ((m: string | Buffer) => void) | undefined;
    await page.routeWebSocket(/\/ws\?jobId=/, (ws) => {
      const server = ws.connectToServer();
      toPage = (m) => ws.send(m);
      server.onMessage((m) => {
        if (holding) held.push(m);
        else {
          ws.send(m);
          if (typeof m === 'string' && m.includes('"generating"')) holding = true;
        }
      });
    });
    const gate = generator.hold('Finished before the cancel');
    await page.getByLabel('Prompt').fill('Finished before the cancel');
    await page.getByLabel('Prompt').press('Enter');
    const card = newestCard(page);
    await card.and(page.locator('[data-state="generating"]')).waitFor();
    const jobId = await card.getAttribute('data-job-id');
    gate.open();
    await expect
      .poll(
        async () =>
          ((await (await fetch(`${app.url}/jobs/${jobId}`)).json()) as { state: string }).state,
      )
      .toBe('done');
    await card.getByRole('button', { name: /^Cancel/ }).click();
    await expect
      .poll(() => card.locator('.cancel-note').textContent())
      .toBe('Too late to cancel: the images were already made.');
    // Then the images come through, and the card is done, not cancelled.
    holding = false;
    for (const m of held.splice(0)) toPage?.(m);
    await card.and(page.locator('[data-state="done"]')).waitFor();
    await expect(card.locator('img.result-image').count()).resolves.toBe(1);
    await expect(card.locator('.cancel-note').isVisible()).resolves.toBe(true);
    expect(problems).toEqual([]);
    await context.close();
  });
});
