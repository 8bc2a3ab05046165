import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { ImagineError } from '../../contracts/errors.ts';
import type { GenerateRequest } from '../../worker/generator.ts';
import { HttpGenerator } from '../../worker/generators/http.ts';
import { type FakeGeneratorEndpoint, startFakeGenerator } from '../fakes/generator-endpoint.ts';
import { enqueueJob } from '../helpers/enqueue.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { followJob } from '../helpers/ws.ts';

const request: GenerateRequest = {
  task: 'generate',
  prompt: 'a lighthouse at dusk',
  width: 128,
  height: 64,
  seeds: [99],
  steps: 4,
};

describe('modal generator against a local fake of the Modal endpoint', () => {
  let fake: FakeGeneratorEndpoint;
  const make = (overrides: Partial<ConstructorParameters<typeof HttpGenerator>[0]> = {}) =>
    new HttpGenerator({
      name: 'modal',
      url: fake.url,
      modalKey: fake.key,
      modalSecret: fake.secret,
      timeoutMs: 10_000,
      maxBytes: 1024 * 1024,
      ...overrides,
    });
  const codeOf = async (p: Promise<unknown>) => {
    try {
      await p;
    } catch (err) {
      expect(err).toBeInstanceOf(ImagineError);
      return (err as ImagineError).code;
    }
    throw new Error('expected a failure');
  };

  beforeAll(async () => {
    fake = await startFakeGenerator();
  });
  afterAll(async () => {
    await fake?.close();
  });
  beforeEach(() => {
    fake.mode = 'ok';
    fake.requests.length = 0;
    fake.resultPolls.length = 0;
    fake.delayMs = 0;
    fake.coldStartMs = 0;
    fake.resultRedirectMs = 0;
    fake.redirectOrigin = undefined;
    fake.dropNextResultPoll = false;
    fake.lateRefusals = 0;
    fake.streamSteps = 0;
    fake.stepMs = 0;
    fake.streamPreviews = false;
    fake.streamsAbandoned = 0;
  });

  describe('progress stream (application/x-ndjson)', () => {
    it('asks for it, reports every step in order with its preview, then returns the image', async () => {
      fake.streamSteps = 4;
      fake.stepMs = 5;
      fake.streamPreviews = true;
      const seen: Array<{ step: number; steps: number; preview?: string }> = [];
      const [image] = await make().generate(request, {
        signal: new AbortController().signal,
        onProgress: (p) =>
          seen.push({
            step: p.step,
            steps: p.steps,
            ...(p.preview ? { preview: p.preview.contentType } : {}),
          }),
      });
      expect(fake.requests[0]?.headers.accept).toContain('application/x-ndjson');
      expect(seen).toEqual([1, 2, 3, 4].map((step) => ({ step, steps: 4, preview: 'image/jpeg' })));
      expect(image?.contentType).toBe('image/png');
      expect(image?.seed).toBe(99);
      const meta = await sharp(image!.bytes).metadata();
      expect([meta.width, meta.height]).toEqual([128, 64]);
    });

    it('a plain image answer still works when progress is asked for', async () => {
      const seen: unknown[] = [];
      const [image] = await make().generate(request, {
        signal: new AbortController().signal,
        onProgress: (p) => seen.push(p),
      });
      expect(seen).toEqual([]);
      expect(image?.contentType).toBe('image/png');
    });

    it('an abort mid-stream closes the connection: the endpoint sees it go', async () => {
      fake.streamSteps = 50;
      fake.stepMs = 20;
      const controller = new AbortController();
      const run = make().generate(request, {
        signal: controller.signal,
        onProgress: (p) => {
          if (p.step === 2) controller.abort(new Error('cancelled'));
        },
      });
      await expect(run).rejects.toThrow();
      await expect.poll(() => fake.streamsAbandoned).toBe(1);
    });

    it('an error line is GENERATION_FAILED; a stream without an image is GENERATOR_BAD_RESPONSE', async () => {
      const streamOf = (lines: string) =>
        new HttpGenerator({
          name: 'http',
          url: 'http://generator.invalid/',
          timeoutMs: 5000,
          maxBytes: 1024,
          fetch: async () =>
            new Response(lines, { headers: { 'content-type': 'application/x-ndjson' } }),
        }).generate(request, { signal: new AbortController().signal });
      expect(await codeOf(streamOf('{"type":"error","message":"CUDA out of memory"}\n'))).toBe(
        'GENERATION_FAILED',
      );
      expect(await codeOf(streamOf('{"type":"progress","step":1,"steps":4}\n'))).toBe(
        'GENERATOR_BAD_RESPONSE',
      );
      expect(await codeOf(streamOf('not json\n'))).toBe('GENERATOR_BAD_RESPONSE');
      const big = Buffer.alloc(2048, 1).toString('base64');
      expect(await codeOf(streamOf(`{"type":"image","seed":1,"data":"${big}"}\n`))).toBe(
        'GENERATOR_TOO_LARGE',
      );
    });
  });

  it('sends the prompt and parameters with proxy-auth headers and returns the image', async () => {
    const [image] = await make().generate(request, { signal: new AbortController().signal });
    if (!image) throw new Error('no image');
    expect(image.contentType).toBe('image/png');
    expect(image.seed).toBe(99);
    const meta = await sharp(image.bytes).metadata();
    expect([meta.width, meta.height]).toEqual([128, 64]);
    const before = Date.now() / 1000;
    expect(fake.requests[0]?.body).toEqual({
      task: 'generate',
      prompt: request.prompt,
      width: 128,
      height: 64,
      steps: 4,
      count: 1,
      seeds: [99],
      seed: 99,
      deadline: expect.any(Number),
    });
    // When this client stops waiting (timeoutMs 10 000 from the call).
    const deadline = fake.requests[0]?.body.deadline as number;
    expect(deadline).toBeGreaterThan(before);
    expect(deadline).toBeLessThanOrEqual(before + 10);
    expect(fake.requests[0]?.headers['modal-key']).toBe(fake.key);
  });

  describe('the creative loop: N images, vary, upscale', () => {
    const answering = (response: () => Response) =>
      new HttpGenerator({
        name: 'http',
        url: 'http://generator.invalid/',
        timeoutMs: 5000,
        maxBytes: 1024 * 1024,
        fetch: async () => response(),
      });

    it('a job of 3 is one request with its seeds, answered as JSON images in order', async () => {
      const images = await make().generate(
        { ...request, seeds: [5, 6, 7] },
        { signal: new AbortController().signal },
      );
      expect(fake.requests).toHaveLength(1);
      expect(fake.requests[0]?.body).toMatchObject({ count: 3, seeds: [5, 6, 7], seed: 5 });
      expect(images.map((i) => i.seed)).toEqual([5, 6, 7]);
      for (const image of images) {
        const meta = await sharp(image.bytes).metadata();
        expect([meta.width, meta.height]).toEqual([128, 64]);
      }
    });

    it('a job of 2 streamed: progress, then one image line each', async () => {
      fake.streamSteps = 2;
      const seen: number[] = [];
      const images = await make().generate(
        { ...request, seeds: [40, 41] },
        { signal: new AbortController().signal, onProgress: (p) => seen.push(p.step) },
      );
      expect(seen).toEqual([1, 2]);
      expect(images.map((i) => i.seed)).toEqual([40, 41]);
    });

    it('a vary sends the task, the input image and its strength', async () => {
      const input = await sharp({
        create: { width: 128, height: 64, channels: 3, background: { r: 1, g: 2, b: 3 } },
      })
        .png()
        .toBuffer();
      await make().generate(
        {
          ...request,
          task: 'vary',
          strength: 0.35,
          input: { bytes: input, contentType: 'image/png', width: 128, height: 64 },
        },
        { signal: new AbortController().signal },
      );
      expect(fake.requests[0]?.body).toMatchObject({
        task: 'vary',
        strength: 0.35,
        image: input.toString('base64'),
        image_type: 'image/png',
      });
    });

    it('a vary without its input image is refused before any request', async () => {
      expect(
        await codeOf(
          make().generate({ ...request, task: 'vary' }, { signal: new AbortController().signal }),
        ),
      ).toBe('GENERATION_FAILED');
      expect(fake.requests).toHaveLength(0);
    });

    it('answers short of the count are GENERATOR_BAD_RESPONSE, not fewer images', async () => {
      const png = await sharp({
        create: { width: 8, height: 8, channels: 3, background: { r: 0, g: 0, b: 0 } },
      })
        .png()
        .toBuffer();
      const two = { ...request, seeds: [1, 2] };
      const live = { signal: new AbortController().signal };
      const bytes = answering(
        () => new Response(png, { headers: { 'content-type': 'image/png' } }),
      );
      expect(await codeOf(bytes.generate(two, live))).toBe('GENERATOR_BAD_RESPONSE');
      const json = answering(() =>
        Response.json({ images: [{ image: png.toString('base64'), seed: 1 }] }),
      );
      expect(await codeOf(json.generate(two, live))).toBe('GENERATOR_BAD_RESPONSE');
      const line = `{"type":"image","index":0,"seed":1,"data":"${png.toString('base64')}"}\n`;
      const stream = answering(
        () => new Response(line, { headers: { 'content-type': 'application/x-ndjson' } }),
      );
      await expect(stream.generate(two, live)).rejects.toThrow('after 1 of 2 images');
      const twice = answering(
        () => new Response(line + line, { headers: { 'content-type': 'application/x-ndjson' } }),
      );
      expect(await codeOf(twice.generate(two, live))).toBe('GENERATOR_BAD_RESPONSE');
    });

    it('a 4xx refusal is GENERATOR_REJECTED with the endpoint’s reason', async () => {
      const refusing = answering(() =>
        Response.json(
          { error: { code: 'BAD_REQUEST', message: 'count must be from 1 to 4 (got 9)' } },
          { status: 422 },
        ),
      );
      const err = await refusing
        .generate(request, { signal: new AbortController().signal })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ImagineError);
      expect((err as ImagineError).code).toBe('GENERATOR_REJECTED');
      expect((err as ImagineError).message).toContain('count must be from 1 to 4');
    });
  });

  describe('Modal’s web layer', () => {
    const generate = (prompt: string, overrides: Parameters<typeof make>[0] = {}) =>
      make(overrides).generate({ ...request, prompt }, { signal: new AbortController().signal });

    it('follows the 303 to the result URL (past the 150 s limit, scaled down) to the one generation’s image', async () => {
      fake.resultRedirectMs = 100;
      fake.delayMs = 450; // POST → 303, GET → 303, ..., GET → the image
      const [image] = await generate('a lighthouse past the limit');
      expect(image?.seed).toBe(99);
      expect(fake.started('a lighthouse past the limit')).toBe(1);
      expect(fake.resultPolls.length).toBeGreaterThanOrEqual(2);
      // Proxy auth applies to the result URL too.
      for (const poll of fake.resultPolls) expect(poll.headers['modal-secret']).toBe(fake.secret);
    });

    it('asks the result URL again after a dropped connection instead of starting a second generation', async () => {
      fake.resultRedirectMs = 100;
      fake.delayMs = 350;
      fake.dropNextResultPoll = true;
      const [image] = await generate('a lighthouse on a flaky line');
      expect(image?.seed).toBe(99);
      expect(fake.started('a lighthouse on a flaky line')).toBe(1);
      expect(fake.resultPolls.length).toBeGreaterThanOrEqual(2);
    });

    it('does not follow a redirect to another origin with the credentials', async () => {
      const elsewhere: Array<IncomingMessage['headers']> = [];
      const other = createServer((req, res) => {
        elsewhere.push(req.headers);
        res.writeHead(404).end();
      });
      await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
      try {
        fake.resultRedirectMs = 50;
        fake.delayMs = 300;
        fake.redirectOrigin = `http://127.0.0.1:${(other.address() as AddressInfo).port}`;
        expect(await codeOf(generate('a lighthouse elsewhere'))).toBe('GENERATOR_BAD_RESPONSE');
        expect(elsewhere).toEqual([]);
      } finally {
        await new Promise((resolve) => other.close(resolve));
      }
    });

    it('a cold start longer than the client waits: the abandoned request uses no GPU', async () => {
      fake.scaleToZero();
      fake.coldStartMs = 1500;
      expect(await codeOf(generate('a lighthouse after a cold start', { timeoutMs: 300 }))).toBe(
        'GENERATOR_TIMEOUT',
      );
      // The container comes up and reaches the request after its deadline: refused, not run.
      await vi.waitFor(() => expect(fake.requests).toHaveLength(1), { timeout: 10_000 });
      expect(fake.lateRefusals).toBe(1);
      expect(fake.started('a lighthouse after a cold start')).toBe(0);
      // Warm now: the next attempt (the queue's retry) gets the image.
      const [image] = await generate('a lighthouse after a cold start');
      expect(image?.seed).toBe(99);
      expect(fake.started('a lighthouse after a cold start')).toBe(1);
    });
  });

  it('wrong credentials → GENERATOR_AUTH', async () => {
    expect(
      await codeOf(
        make({ modalSecret: 'nope' }).generate(request, { signal: new AbortController().signal }),
      ),
    ).toBe('GENERATOR_AUTH');
  });

  it('a slow answer → GENERATOR_TIMEOUT (retryable)', async () => {
    fake.mode = 'slow';
    const code = await codeOf(
      make({ timeoutMs: 300 }).generate(request, { signal: new AbortController().signal }),
    );
    expect(code).toBe('GENERATOR_TIMEOUT');
  });

  it('a garbage body → GENERATOR_BAD_RESPONSE', async () => {
    fake.mode = 'garbage';
    expect(await codeOf(make().generate(request, { signal: new AbortController().signal }))).toBe(
      'GENERATOR_BAD_RESPONSE',
    );
  });

  it('an answer over the size cap → GENERATOR_TOO_LARGE', async () => {
    fake.mode = 'huge';
    expect(await codeOf(make().generate(request, { signal: new AbortController().signal }))).toBe(
      'GENERATOR_TOO_LARGE',
    );
  });

  it('a 503 → GENERATOR_UNAVAILABLE', async () => {
    fake.mode = 'unavailable';
    expect(await codeOf(make().generate(request, { signal: new AbortController().signal }))).toBe(
      'GENERATOR_UNAVAILABLE',
    );
  });

  it('an unreachable endpoint → GENERATOR_UNAVAILABLE', async () => {
    const gen = make({ url: 'http://127.0.0.1:1/' });
    expect(await codeOf(gen.generate(request, { signal: new AbortController().signal }))).toBe(
      'GENERATOR_UNAVAILABLE',
    );
  });

  it('aborts when the worker shuts down', async () => {
    fake.mode = 'slow';
    const ac = new AbortController();
    const pending = make().generate(request, { signal: ac.signal });
    setTimeout(() => ac.abort(), 100);
    await expect(pending).rejects.toThrow();
  });

  describe('through the whole pipeline (GENERATOR=modal)', () => {
    let app: Awaited<ReturnType<typeof startTestImagine>>;
    beforeAll(async () => {
      app = await startTestImagine({
        GENERATOR: 'modal',
        MODAL_FLUX_URL: fake.url,
        MODAL_KEY: fake.key,
        MODAL_SECRET: fake.secret,
        GENERATOR_TIMEOUT_MS: '1000',
        SQS_MAX_RECEIVE_COUNT: '2',
      });
    });
    afterAll(async () => {
      await app?.stop();
    });

    const enqueue = (prompt: string) =>
      enqueueJob(app.url, prompt, { width: 256, height: 128, seed: 5 });

    it('delivers the generated image, not labelled as demo', async () => {
      const { ws, demo } = await enqueue('a fox in space');
      expect(demo).toBe(false);
      const got = await followJob(ws);
      const meta = await sharp(got.binaries[0]!).metadata();
      expect([meta.width, meta.height]).toEqual([256, 128]);
    });

    it('a job whose generator keeps failing ends as failed, with the reason, instead of dying silently', async () => {
      fake.mode = 'unavailable';
      const { ws } = await enqueue('no gpu today');
      const got = await followJob(ws, 30_000);
      const last = got.texts.at(-1)!;
      expect(last).toMatchObject({
        type: 'status',
        state: 'failed',
        error: { code: 'GENERATOR_UNAVAILABLE' },
      });
      expect(got.binaries).toHaveLength(0);
      // Attempted once per allowed receive, then reported.
      expect(fake.requests.filter((r) => r.body.prompt === 'no gpu today')).toHaveLength(2);
    });

    it('a cold start longer than the worker waits: the queue’s retry gets the image, the GPU runs once', async () => {
      fake.scaleToZero();
      fake.coldStartMs = 2500; // GENERATOR_TIMEOUT_MS is 1000 here
      const { ws } = await enqueue('a slow container');
      const got = await followJob(ws, 30_000);
      expect(got.binaries).toHaveLength(1);
      expect(fake.lateRefusals).toBe(1);
      expect(fake.started('a slow container')).toBe(1);
    }, 40_000);

    it('a non-retryable failure (bad credentials) is reported at once', async () => {
      const realSecret = fake.secret;
      fake.secret = 'rotated';
      try {
        const { ws } = await enqueue('bad creds');
        const got = await followJob(ws);
        expect(got.texts.at(-1)).toMatchObject({
          state: 'failed',
          error: { code: 'GENERATOR_AUTH' },
        });
      } finally {
        fake.secret = realSecret;
      }
    });
  });
});
