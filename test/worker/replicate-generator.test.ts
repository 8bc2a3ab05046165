import sharp from 'sharp';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { isRetryable } from '../../contracts/errors.ts';
import type { GenerateProgress } from '../../worker/generator.ts';
import {
  nearestAspect,
  ReplicateGenerator,
  type ReplicateOptions,
} from '../../worker/generators/replicate.ts';
import { type FakeReplicate, startFakeReplicate } from '../fakes/replicate.ts';
import { failure, generateRequest, generateThroughPipeline, live } from '../helpers/generator.ts';
import { pngOf } from '../helpers/images.ts';

const request = generateRequest(1344, 768);

describe('Replicate generator against a local fake of its HTTP API', () => {
  let fake: FakeReplicate;
  let input: Buffer;
  const make = (overrides: Partial<ReplicateOptions> = {}) =>
    new ReplicateGenerator({
      name: 'replicate',
      apiUrl: fake.apiUrl,
      token: fake.token,
      model: 'black-forest-labs/flux-schnell',
      varyModel: 'black-forest-labs/flux-dev',
      upscaleModel:
        'nightmareai/real-esrgan:f121d640bd286e1fdc67f9799164c1d5be36ff74576ee11c803ae5b665dd46aa',
      outputHosts: [fake.deliveryOrigin],
      timeoutMs: 10_000,
      maxBytes: 4 * 1024 * 1024,
      pollIntervalMs: 10,
      ...overrides,
    });

  beforeAll(async () => {
    fake = await startFakeReplicate();
    input = await pngOf(64, 32, { r: 0x33, g: 0x66, b: 0x99 });
  });
  afterAll(async () => {
    await fake?.close();
  });
  beforeEach(() => {
    fake.mode = 'ok';
    fake.stepMs = 5;
    fake.failSeed = undefined;
    fake.predictions.length = 0;
    fake.cancels.length = 0;
    fake.createAnswerMs = 0;
    fake.downloads.length = 0;
  });

  it('creates a flux-schnell prediction, polls it and fetches the output without sending the token to the file host', async () => {
    const [image] = await make().generate(request, { signal: live() });
    expect(image!.seed).toBe(99);
    expect([image!.width, image!.height]).toEqual([1344, 768]);
    const meta = await sharp(image!.bytes).metadata();
    expect([meta.width, meta.height]).toEqual([1344, 768]);
    expect(fake.predictions[0]!.input).toEqual({
      prompt: request.prompt,
      seed: 99,
      num_outputs: 1,
      num_inference_steps: 4,
      output_format: 'png',
      aspect_ratio: '16:9',
      megapixels: '1',
    });
    expect(fake.downloads).toEqual([
      { path: expect.stringMatching(/out-0\.png$/), authorized: false },
    ]);
  });

  it('count: one prediction per seed, side by side, in seed order', async () => {
    const images = await make().generate({ ...request, seeds: [5, 6, 7] }, { signal: live() });
    expect(images.map((i) => i.seed)).toEqual([5, 6, 7]);
    expect(fake.predictions.map((p) => p.input.seed).sort()).toEqual([5, 6, 7]);
  });

  it('vary: uploads the input with the Files API, runs flux-dev at prompt_strength, deletes the file', async () => {
    const [image] = await make().generate(
      {
        ...request,
        task: 'vary',
        width: 64,
        height: 32,
        input: { bytes: input, contentType: 'image/png', width: 64, height: 32 },
        strength: 0.35,
      },
      { signal: live() },
    );
    expect([image!.width, image!.height]).toEqual([64, 32]);
    const p = fake.predictions[0]!;
    expect(p.model).toBe('black-forest-labs/flux-dev');
    expect(p.input).toMatchObject({
      prompt_strength: 0.35,
      image: expect.stringContaining('/v1/files/'),
    });
    const fileId = String(p.input.image).split('/').at(-1)!;
    expect(fake.deletedFiles).toContain(fileId);
  });

  it('upscale: a versioned model through POST /v1/predictions, scale 2', async () => {
    const [image] = await make().generate(
      {
        ...request,
        task: 'upscale',
        width: 128,
        height: 64,
        input: { bytes: input, contentType: 'image/png', width: 64, height: 32 },
        strength: 0.3,
      },
      { signal: live() },
    );
    expect([image!.width, image!.height]).toEqual([128, 64]);
    expect(fake.predictions[0]!.input).toMatchObject({ scale: 2 });
  });

  it('progress from the logs: i/n over every image', async () => {
    fake.stepMs = 20;
    const seen: GenerateProgress[] = [];
    await make().generate(
      { ...request, seeds: [1, 2] },
      { signal: live(), onProgress: (p) => seen.push(p) },
    );
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.every((p) => p.steps === 8 && p.step <= 8)).toBe(true);
    expect(seen.at(-1)!.step).toBe(8);
  });

  it.each([
    ['with both ids known', 0],
    // Replicate has both predictions running; their ids are still on the way back.
    ['while the creations are still answering', 300],
  ])('cancel %s: every prediction is cancelled, none left running', async (_, answerMs) => {
    fake.stepMs = 200;
    fake.createAnswerMs = answerMs;
    const ac = new AbortController();
    const pending = make().generate({ ...request, seeds: [1, 2] }, { signal: ac.signal });
    await expect.poll(() => fake.predictions.length).toBe(2);
    ac.abort(new Error('cancelled by user'));
    await expect(pending).rejects.toThrow('cancelled by user');
    expect(fake.cancels.sort()).toEqual(fake.predictions.map((p) => p.id).sort());
    await expect.poll(() => fake.predictions.every((p) => p.status === 'canceled')).toBe(true);
  });

  it('one image failing stops the others: their predictions are cancelled, not left running', async () => {
    fake.stepMs = 100;
    fake.failSeed = 1;
    const err = await failure(make().generate({ ...request, seeds: [1, 2] }, { signal: live() }));
    expect(err.code).toBe('GENERATION_FAILED');
    const other = fake.predictions.find((p) => p.input.seed === 2)!;
    expect(fake.cancels).toEqual([other.id]);
    expect(other.status).toBe('canceled');
  });

  it('stuck past the deadline → GENERATOR_TIMEOUT, and the prediction is cancelled', async () => {
    fake.mode = 'stuck';
    const err = await failure(make({ timeoutMs: 300 }).generate(request, { signal: live() }));
    expect(err.code).toBe('GENERATOR_TIMEOUT');
    expect(fake.cancels).toEqual([fake.predictions[0]!.id]);
  });

  it('a bad token → GENERATOR_AUTH; an input the schema refuses → GENERATOR_REJECTED with its reason', async () => {
    expect(
      (await failure(make({ token: 'r8_wrong' }).generate(request, { signal: live() }))).code,
    ).toBe('GENERATOR_AUTH');
    const err = await failure(make().generate({ ...request, steps: 20 }, { signal: live() }));
    expect(err.code).toBe('GENERATOR_REJECTED');
    expect(err.message).toContain('input.num_inference_steps: Must be less than or equal to 4');
    expect(isRetryable(err)).toBe(false);
    const unknown = await failure(
      make({ model: 'nobody/nothing' }).generate(request, { signal: live() }),
    );
    expect(unknown.code).toBe('GENERATOR_REJECTED');
  });

  it('throttled (429) and down (503) → GENERATOR_UNAVAILABLE, retryable, Retry-After kept', async () => {
    fake.mode = 'throttle';
    const throttled = await failure(make().generate(request, { signal: live() }));
    expect(throttled.code).toBe('GENERATOR_UNAVAILABLE');
    expect(throttled.retryAfterSeconds).toBe(2);
    fake.mode = 'down';
    expect(isRetryable(await failure(make().generate(request, { signal: live() })))).toBe(true);
  });

  it('a failed prediction: out of memory is retryable, a refused prompt is not', async () => {
    fake.mode = 'oom';
    expect((await failure(make().generate(request, { signal: live() }))).code).toBe(
      'GENERATOR_UNAVAILABLE',
    );
    fake.mode = 'nsfw';
    const nsfw = await failure(make().generate(request, { signal: live() }));
    expect(nsfw.code).toBe('GENERATION_FAILED');
    expect(nsfw.message).toContain('NSFW content detected');
  });

  it('an output URL on a host it may not use is never fetched (SSRF)', async () => {
    fake.mode = 'evil-output';
    const err = await failure(make().generate(request, { signal: live() }));
    expect(err.code).toBe('GENERATOR_BAD_RESPONSE');
    expect(err.message).toContain('169.254.169.254');
  });

  it('an output over the byte cap → GENERATOR_TOO_LARGE', async () => {
    expect(
      (await failure(make({ maxBytes: 100 }).generate(request, { signal: live() }))).code,
    ).toBe('GENERATOR_TOO_LARGE');
  });

  it('maps sizes to the nearest aspect ratio Flux takes', () => {
    expect(nearestAspect(1024, 1024)).toBe('1:1');
    expect(nearestAspect(1344, 768)).toBe('16:9');
    expect(nearestAspect(768, 1344)).toBe('9:16');
    expect(nearestAspect(1216, 832)).toBe('3:2');
  });

  it('through the whole pipeline: GENERATOR=replicate with REPLICATE_* configuration', async () => {
    await generateThroughPipeline(
      {
        GENERATOR: 'replicate',
        REPLICATE_API_TOKEN: fake.token,
        REPLICATE_API_URL: fake.apiUrl,
        REPLICATE_OUTPUT_HOSTS: fake.deliveryOrigin,
      },
      { width: 512, height: 512, seed: 5, steps: 4 },
    );
    expect(fake.predictions.at(-1)!.input).toMatchObject({ seed: 5, megapixels: '0.25' });
  });
});
