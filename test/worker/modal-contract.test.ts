/**
 * The HTTP generator against the Modal app's own endpoint: worker/modal/flux_core.py served by
 * uvicorn over its stand-in pipeline (worker/modal/stand_in.py), no fake in between. What the
 * TypeScript side sends is what the Python side validates, and what it answers is what the
 * TypeScript side reads: N images in one call, vary, upscale, the progress stream, a refusal,
 * and a cancel that stops the pipeline at its next step.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { upscaleMaxSide } from '../../contracts/backends.ts';
import { ImagineError } from '../../contracts/errors.ts';
import { upscaleSize } from '../../contracts/limits.ts';
import type { GenerateProgress, GenerateRequest } from '../../worker/generator.ts';
import { HttpGenerator } from '../../worker/generators/http.ts';

// Debian's interpreter, as in modal-app.test.ts; PYTHON overrides.
const python =
  process.env.PYTHON ?? (existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3');

interface StandInCall {
  task: string;
  width: number;
  height: number;
  seeds: number[];
  steps: number;
  strength: number | null;
  image: [number, number] | null;
}
interface StandInState {
  calls: StandInCall[];
  steps_run: number;
  stops: number;
  running: boolean;
}

let server: ChildProcess;
let url = '';

beforeAll(async () => {
  server = spawn(python, ['worker/modal/stand_in.py', '--step-ms', '20'], {
    env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`stand-in did not start:\n${output}`)), 20_000);
    const read = (chunk: Buffer) => {
      output += chunk.toString();
      const port = /listening on (\d+)/.exec(output)?.[1];
      if (port) {
        clearTimeout(timer);
        resolve(`http://127.0.0.1:${port}/`);
      }
    };
    server.stdout?.on('data', read);
    server.stderr?.on('data', read);
    server.once('exit', (code) => reject(new Error(`stand-in exited ${code}:\n${output}`)));
  });
}, 30_000);

afterAll(() => {
  server?.kill();
});

const generator = () =>
  new HttpGenerator({ name: 'modal', url, timeoutMs: 20_000, maxBytes: 4 * 1024 * 1024 });
const state = async (): Promise<StandInState> =>
  (await fetch(new URL('__stand_in', url))).json() as Promise<StandInState>;
const live = () => ({ signal: new AbortController().signal });

async function png(width: number, height: number): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r: 200, g: 40, b: 90 } } })
    .png()
    .toBuffer();
}

const base: GenerateRequest = {
  task: 'generate',
  prompt: 'a lighthouse at dusk',
  width: 64,
  height: 96,
  seeds: [7],
  steps: 4,
};

describe('the HTTP generator against flux_core itself (stand-in pipeline)', () => {
  it('a job of 4 is one call with the four seeds; the stream reports each step, then the images in order', async () => {
    const before = (await state()).calls.length;
    const seen: GenerateProgress[] = [];
    const images = await generator().generate(
      { ...base, seeds: [4294967295, 0, 1, 2] },
      { ...live(), onProgress: (p) => seen.push(p) },
    );
    expect(images.map((i) => i.seed)).toEqual([4294967295, 0, 1, 2]);
    for (const image of images) {
      expect(image.contentType).toBe('image/png');
      const meta = await sharp(image.bytes).metadata();
      expect([meta.width, meta.height]).toEqual([64, 96]);
    }
    expect(seen.map((p) => [p.step, p.steps])).toEqual([
      [1, 4],
      [2, 4],
      [3, 4],
      [4, 4],
    ]);
    expect(seen.every((p) => p.preview?.contentType === 'image/jpeg')).toBe(true);
    const { calls } = await state();
    expect(calls.slice(before)).toEqual([
      expect.objectContaining({ task: 'generate', seeds: [4294967295, 0, 1, 2], image: null }),
    ]);
    // Image 2 alone, from its own seed, is the same image.
    const [alone] = await generator().generate({ ...base, seeds: [1] }, live());
    expect(alone?.bytes.equals(images[2]!.bytes)).toBe(true);
  });

  it('a vary sends the input image and its strength to the img2img path', async () => {
    const input = await png(128, 64);
    const images = await generator().generate(
      {
        ...base,
        task: 'vary',
        width: 128,
        height: 64,
        seeds: [11, 12],
        strength: 0.35,
        input: { bytes: input, contentType: 'image/png', width: 128, height: 64 },
      },
      live(),
    );
    expect(images.map((i) => i.seed)).toEqual([11, 12]);
    expect((await state()).calls.at(-1)).toMatchObject({
      task: 'vary',
      strength: 0.35,
      seeds: [11, 12],
      image: [128, 64],
    });
  });

  it('an upscale doubles the size at strength 0.3 and reports the steps it runs', async () => {
    const seen: GenerateProgress[] = [];
    const [image] = await generator().generate(
      {
        ...base,
        task: 'upscale',
        width: 128,
        height: 96,
        strength: 0.3,
        input: { bytes: await png(64, 48), contentType: 'image/png', width: 64, height: 48 },
      },
      { ...live(), onProgress: (p) => seen.push(p) },
    );
    const meta = await sharp(image!.bytes).metadata();
    expect([meta.width, meta.height]).toEqual([128, 96]);
    expect((await state()).calls.at(-1)).toMatchObject({
      task: 'upscale',
      strength: 0.3,
      image: [128, 96],
    });
    expect(seen.map((p) => p.steps)).toEqual([2, 2]);
  });

  it('a request the endpoint refuses is GENERATOR_REJECTED with its reason, and runs nothing', async () => {
    const before = (await state()).calls.length;
    const refused = await generator()
      .generate(
        {
          ...base,
          task: 'upscale',
          width: 4096,
          height: 4096,
          strength: 0.3,
          input: { bytes: await png(64, 64), contentType: 'image/png', width: 2048, height: 2048 },
        },
        live(),
      )
      .catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(ImagineError);
    expect((refused as ImagineError).code).toBe('GENERATOR_REJECTED');
    expect((refused as ImagineError).message).toContain('2048');
    expect((await state()).calls.length).toBe(before);
  });

  it('the largest upscale the relay queues on GENERATOR=modal is one the app makes; one step past is refused', async () => {
    // What the relay, the bots and the page allow (contracts/backends.ts) against MAX_SIDE in
    // flux_core.py itself: a wrong figure on either side fails here.
    const side = upscaleMaxSide({ GENERATOR: 'modal' });
    const input = async (width: number, height: number) => ({
      bytes: await png(width, height),
      contentType: 'image/png' as const,
      width,
      height,
    });
    const half = side / 2;
    const [image] = await generator().generate(
      {
        ...base,
        task: 'upscale',
        width: side,
        height: side,
        strength: 0.3,
        input: await input(half, half),
      },
      live(),
    );
    const meta = await sharp(image!.bytes).metadata();
    expect([meta.width, meta.height]).toEqual([side, side]);
    const past = half + 16;
    expect(upscaleSize(past, half, side)).toBeUndefined();
    const before = (await state()).calls.length;
    const refused = await generator()
      .generate(
        {
          ...base,
          task: 'upscale',
          width: past * 2,
          height: side,
          strength: 0.3,
          input: await input(past, half),
        },
        live(),
      )
      .catch((err: unknown) => err);
    expect((refused as ImagineError).code).toBe('GENERATOR_REJECTED');
    expect((await state()).calls.length).toBe(before);
  });

  it('a cancel mid-stream stops the pipeline at its next step', async () => {
    const before = await state();
    const controller = new AbortController();
    const run = generator().generate(
      { ...base, steps: 40 },
      {
        signal: controller.signal,
        onProgress: (p) => {
          if (p.step === 2) controller.abort(new Error('cancelled'));
        },
      },
    );
    await expect(run).rejects.toThrow('cancelled');
    await expect
      .poll(async () => (await state()).stops, { timeout: 10_000 })
      .toBe(before.stops + 1);
    const after = await state();
    expect(after.running).toBe(false);
    // 40 steps of 20 ms were asked for; it stopped a step or so after the abort.
    expect(after.steps_run - before.steps_run).toBeLessThan(10);
  });
});
