import sharp from 'sharp';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { isRetryable } from '../../contracts/errors.ts';
import type { GenerateProgress } from '../../worker/generator.ts';
import { A1111Generator, type A1111Options } from '../../worker/generators/a1111.ts';
import { type FakeA1111, startFakeA1111 } from '../fakes/a1111.ts';
import { failure, generateRequest, generateThroughPipeline, live } from '../helpers/generator.ts';

const request = generateRequest(128, 64);

describe('A1111 / Forge generator against a local fake of its web API', () => {
  let fake: FakeA1111;
  const make = (overrides: Partial<A1111Options> = {}) =>
    new A1111Generator({
      name: 'a1111',
      url: fake.url,
      auth: 'imagine:s3cret',
      sampler: 'Euler',
      cfgScale: 7,
      upscaler: 'R-ESRGAN 4x+',
      varyStrength: 0.6,
      timeoutMs: 10_000,
      maxBytes: 1024 * 1024,
      progressIntervalMs: 10,
      ...overrides,
    });

  beforeAll(async () => {
    fake = await startFakeA1111({ auth: 'imagine:s3cret' });
  });
  afterAll(async () => {
    await fake?.close();
  });
  beforeEach(() => {
    fake.mode = 'ok';
    fake.stepMs = 5;
    fake.seen.length = 0;
    fake.maxRunning = 0;
  });

  it('txt2img: sends the real request shape with basic auth and returns the image and its seed', async () => {
    const [image] = await make({ model: 'flux1-schnell.safetensors' }).generate(request, {
      signal: live(),
    });
    if (!image) throw new Error('no image');
    expect(image.contentType).toBe('image/png');
    expect(image.seed).toBe(99);
    const meta = await sharp(image.bytes).metadata();
    expect([meta.width, meta.height]).toEqual([128, 64]);
    const sent = fake.seen.find((s) => s.path === '/sdapi/v1/txt2img')!;
    expect(sent.authorization).toBe(`Basic ${Buffer.from('imagine:s3cret').toString('base64')}`);
    expect(sent.body).toMatchObject({
      prompt: request.prompt,
      seed: 99,
      steps: 4,
      width: 128,
      height: 64,
      batch_size: 1,
      n_iter: 1,
      sampler_name: 'Euler',
      cfg_scale: 7,
      send_images: true,
      save_images: false,
      override_settings: { sd_model_checkpoint: 'flux1-schnell.safetensors' },
      override_settings_restore_afterwards: true,
    });
  });

  it('consecutive seeds make one batch; A1111 reports each image’s own seed', async () => {
    const images = await make().generate(
      { task: 'generate', prompt: 'p', seeds: [7, 8, 9], width: 64, height: 64, steps: 2 },
      { signal: live() },
    );
    expect(images.map((i) => i.seed)).toEqual([7, 8, 9]);
    const calls = fake.seen.filter((s) => s.path === '/sdapi/v1/txt2img');
    expect(calls).toHaveLength(1);
    expect(calls[0]!.body).toMatchObject({ seed: 7, batch_size: 3 });
  });

  it('seeds that are not consecutive are one request each, so every image keeps its seed', async () => {
    const images = await make().generate(
      { task: 'generate', prompt: 'p', seeds: [5, 40, 41], width: 64, height: 64, steps: 2 },
      { signal: live() },
    );
    expect(images.map((i) => i.seed)).toEqual([5, 40, 41]);
    const calls = fake.seen.filter((s) => s.path === '/sdapi/v1/txt2img');
    expect(calls.map((c) => [c.body!.seed, c.body!.batch_size])).toEqual([
      [5, 1],
      [40, 2],
    ]);
  });

  it('vary: img2img with init_images and denoising_strength', async () => {
    const input = await sharp({
      create: { width: 64, height: 64, channels: 3, background: '#336699' },
    })
      .png()
      .toBuffer();
    const [image] = await make().generate(
      {
        task: 'vary',
        prompt: 'p',
        seeds: [3],
        width: 64,
        height: 64,
        steps: 4,
        input: { bytes: input, contentType: 'image/png', width: 64, height: 64 },
        strength: 0.35,
      },
      { signal: live() },
    );
    expect(image!.contentType).toBe('image/png');
    const sent = fake.seen.find((s) => s.path === '/sdapi/v1/img2img')!;
    expect(sent.body).toMatchObject({
      init_images: [input.toString('base64')],
      denoising_strength: 0.35,
    });
  });

  it('upscale: extra-single-image with the configured upscaler to the target size', async () => {
    const input = await sharp({
      create: { width: 64, height: 32, channels: 3, background: '#000' },
    })
      .png()
      .toBuffer();
    const [image] = await make().generate(
      {
        task: 'upscale',
        prompt: 'p',
        seeds: [3],
        width: 128,
        height: 64,
        steps: 4,
        input: { bytes: input, contentType: 'image/png', width: 64, height: 32 },
        strength: 0.3,
      },
      { signal: live() },
    );
    const meta = await sharp(image!.bytes).metadata();
    expect([meta.width, meta.height]).toEqual([128, 64]);
    expect(fake.seen.find((s) => s.path === '/sdapi/v1/extra-single-image')!.body).toMatchObject({
      resize_mode: 1,
      upscaling_resize_w: 128,
      upscaling_resize_h: 64,
      upscaler_1: 'R-ESRGAN 4x+',
    });
  });

  it('reports progress from /sdapi/v1/progress: steps climb to n of n, with previews', async () => {
    fake.stepMs = 30;
    const seen: GenerateProgress[] = [];
    await make().generate(
      { ...request, steps: 6 },
      { signal: live(), onProgress: (p) => seen.push(p) },
    );
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.every((p) => p.steps === 6 && p.step >= 0 && p.step <= 6)).toBe(true);
    const steps = seen.map((p) => p.step);
    expect([...steps].sort((a, b) => a - b)).toEqual(steps);
    expect(seen.some((p) => p.preview?.contentType === 'image/png')).toBe(true);
  });

  it('cancel: the abort signal interrupts the generation on the server and rejects', async () => {
    fake.stepMs = 200;
    const ac = new AbortController();
    const before = fake.finished;
    const pending = make().generate({ ...request, steps: 50 }, { signal: ac.signal });
    await new Promise((r) => setTimeout(r, 300));
    ac.abort(new Error('cancelled by user'));
    await expect(pending).rejects.toThrow('cancelled by user');
    await expect.poll(() => fake.interrupts).toBeGreaterThan(0);
    expect(fake.finished).toBe(before);
  });

  it('sends one request at a time (A1111’s progress and interrupt are global)', async () => {
    fake.stepMs = 10;
    const gen = make();
    const all = await Promise.all(
      [1, 2, 3].map((seed) => gen.generate({ ...request, seeds: [seed] }, { signal: live() })),
    );
    expect(all.map((i) => i[0]!.seed)).toEqual([1, 2, 3]);
    expect(fake.maxRunning).toBe(1);
  });

  it('wrong credentials → GENERATOR_AUTH, not retried', async () => {
    const err = await failure(make({ auth: 'imagine:nope' }).generate(request, { signal: live() }));
    expect(err.code).toBe('GENERATOR_AUTH');
    expect(isRetryable(err)).toBe(false);
  });

  it('an unknown sampler (A1111 404) → GENERATOR_REJECTED with its reason, not retried', async () => {
    const err = await failure(make({ sampler: 'Nope' }).generate(request, { signal: live() }));
    expect(err.code).toBe('GENERATOR_REJECTED');
    expect(err.message).toContain('Sampler not found');
    expect(isRetryable(err)).toBe(false);
  });

  it('CUDA out of memory (500) → GENERATOR_UNAVAILABLE, retried', async () => {
    fake.mode = 'oom';
    const err = await failure(make().generate(request, { signal: live() }));
    expect(err.code).toBe('GENERATOR_UNAVAILABLE');
    expect(isRetryable(err)).toBe(true);
  });

  it('a proxy’s HTML 502 → GENERATOR_UNAVAILABLE', async () => {
    fake.mode = 'html';
    expect((await failure(make().generate(request, { signal: live() }))).code).toBe(
      'GENERATOR_UNAVAILABLE',
    );
  });

  it('images that are not images → GENERATOR_BAD_RESPONSE', async () => {
    fake.mode = 'garbage';
    expect((await failure(make().generate(request, { signal: live() }))).code).toBe(
      'GENERATOR_BAD_RESPONSE',
    );
  });

  it('an answer over the byte cap → GENERATOR_TOO_LARGE', async () => {
    fake.mode = 'huge';
    expect(
      (await failure(make({ maxBytes: 1024 * 1024 }).generate(request, { signal: live() }))).code,
    ).toBe('GENERATOR_TOO_LARGE');
  });

  it('no answer in time → GENERATOR_TIMEOUT; a dropped connection → GENERATOR_UNAVAILABLE', async () => {
    fake.mode = 'hang';
    expect(
      (await failure(make({ timeoutMs: 300 }).generate(request, { signal: live() }))).code,
    ).toBe('GENERATOR_TIMEOUT');
    fake.mode = 'drop';
    expect((await failure(make().generate(request, { signal: live() }))).code).toBe(
      'GENERATOR_UNAVAILABLE',
    );
  });

  it('connection refused → GENERATOR_UNAVAILABLE, retried', async () => {
    const err = await failure(
      make({ url: 'http://127.0.0.1:9' }).generate(request, { signal: live() }),
    );
    expect(err.code).toBe('GENERATOR_UNAVAILABLE');
    expect(isRetryable(err)).toBe(true);
  });

  it('through the whole pipeline: GENERATOR=a1111 with A1111_* configuration', async () => {
    await generateThroughPipeline(
      {
        GENERATOR: 'a1111',
        A1111_URL: fake.url,
        A1111_AUTH: 'imagine:s3cret',
        A1111_SAMPLER: 'DPM++ 2M',
        A1111_CFG_SCALE: '1',
      },
      { width: 256, height: 128, seed: 5 },
    );
    expect(fake.seen.find((s) => s.path === '/sdapi/v1/txt2img')!.body).toMatchObject({
      sampler_name: 'DPM++ 2M',
      cfg_scale: 1,
      seed: 5,
    });
  });
});
