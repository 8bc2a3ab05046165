/**
 * Progress (issue 11): the worker forwards the generator's progress to the relay as signed
 * `generating` pushes, coalesced, and the relay sends them to WebSocket waiters in order, with
 * previews; progress pushes that fail or hang never keep the image from arriving.
 */
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import WebSocket from 'ws';
import { ImagineError } from '../../contracts/errors.ts';
import { sniffImageType } from '../../contracts/image-types.ts';
import type { GenerateProgress } from '../../worker/generator.ts';
import { ProgressForwarder } from '../../worker/progress-forwarder.ts';
import { createRelayPusher, type RelayPusher } from '../../worker/push-client.ts';
import { type FakeGeneratorEndpoint, startFakeGenerator } from '../fakes/generator-endpoint.ts';
import { enqueueJob } from '../helpers/enqueue.ts';
import { startTestImagine, TEST_SECRET } from '../helpers/imagine.ts';

const redisUrl = inject('redisUrl');

/** Every frame of a job's WebSocket, text or binary, in the order it came. */
type Frame = { text: Record<string, unknown> } | { binary: Buffer };
function framesOf(wsUrl: string, timeoutMs = 20_000): Promise<Frame[]> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(wsUrl);
    const frames: Frame[] = [];
    const timer = setTimeout(() => {
      socket.terminate();
      reject(new Error(`no close within ${timeoutMs} ms: ${JSON.stringify(frames)}`));
    }, timeoutMs);
    socket.on('message', (data, isBinary) => {
      frames.push(
        isBinary ? { binary: Buffer.from(data as Buffer) } : { text: JSON.parse(String(data)) },
      );
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(frames);
    });
    socket.on('error', reject);
  });
}

describe('progress frames on the WebSocket', () => {
  let fake: FakeGeneratorEndpoint;
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  beforeAll(async () => {
    fake = await startFakeGenerator();
    app = await startTestImagine({ ...fake.env(), PROGRESS_PUSH_MS: '10' });
  });
  afterAll(async () => {
    await app?.stop();
    await fake?.close();
  });

  it('arrive in order, each preview as a frame and one binary, all before the image', async () => {
    fake.streamSteps = 6;
    fake.stepMs = 120;
    fake.streamPreviews = true;
    const job = await enqueueJob(app.url, 'a fox step by step', {
      width: 64,
      height: 64,
      count: 1,
    });
    const frames = await framesOf(job.ws);

    const texts = frames.flatMap((f) => ('text' in f ? [f.text] : []));
    const reports = texts.filter((t) => t.type === 'status' && t.progress !== undefined);
    expect(reports.length).toBeGreaterThanOrEqual(2);
    const steps = reports.map((r) => r.step as number);
    // Strictly increasing: never one out of order (latest wins, one push in flight).
    expect(steps).toEqual([...steps].sort((a, b) => a - b));
    expect(new Set(steps).size).toBe(steps.length);
    for (const r of reports) {
      expect(r).toMatchObject({ jobId: job.jobId, state: 'generating', steps: 6 });
      expect(r.progress).toBeCloseTo((r.step as number) / 6, 3);
    }
    // Every preview frame is followed at once by exactly one binary frame: a JPEG of its size.
    frames.forEach((f, i) => {
      if ('text' in f && f.text.type === 'preview') {
        const next = frames[i + 1];
        expect(next && 'binary' in next).toBe(true);
        const bytes = (next as { binary: Buffer }).binary;
        expect(bytes.length).toBe(f.text.bytes);
        expect(sniffImageType(bytes)).toBe('image/jpeg');
      }
    });
    expect(texts.filter((t) => t.type === 'preview').length).toBeGreaterThanOrEqual(1);
    // The image comes last, after every progress frame.
    const imageAt = frames.findIndex((f) => 'text' in f && f.text.type === 'image');
    const lastReport = frames.findLastIndex(
      (f) => 'text' in f && f.text.type !== 'image' && f.text.progress !== undefined,
    );
    expect(imageAt).toBeGreaterThan(lastReport);
    const last = frames.at(-1)!;
    expect('binary' in last && sniffImageType(last.binary)).toBe('image/png');
    // One streamed call is one generation.
    expect(fake.started('a fox step by step')).toBe(1);
  });

  it('a job that reports no progress still gets its image (plain bytes)', async () => {
    fake.streamSteps = 0;
    const job = await enqueueJob(app.url, 'a plain fox', { width: 64, height: 64, count: 1 });
    const frames = await framesOf(job.ws);
    expect(frames.some((f) => 'text' in f && f.text.progress !== undefined)).toBe(false);
    expect(frames.filter((f) => 'binary' in f)).toHaveLength(1);
  });
});

describe('progress pushes that fail never hold up the image', () => {
  let fake: FakeGeneratorEndpoint;
  const cleanups: Array<() => Promise<unknown>> = [];
  beforeAll(async () => {
    fake = await startFakeGenerator();
    fake.streamSteps = 5;
    fake.stepMs = 60;
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  afterAll(async () => {
    await fake?.close();
  });

  it.each([
    ['refused at once', 'fail'],
    ['hanging until aborted', 'hang'],
  ] as const)(
    'every progress push %s: the image arrives, no progress is shown',
    async (_name, how) => {
      const id = randomBytes(6).toString('hex');
      const env = {
        QUEUE_BACKEND: 'bullmq',
        REDIS_URL: redisUrl,
        REDIS_KEY_PREFIX: `test-progress-${id}:`,
        BULLMQ_QUEUE: `jobs-${id}`,
        PROGRESS_PUSH_MS: '10',
      };
      const relay = await startTestImagine(env, { role: 'relay' });
      cleanups.push(() => relay.stop());
      const real = createRelayPusher({ relayUrl: relay.url, secret: TEST_SECRET });
      const seen = { progress: 0, aborted: 0, inFlight: 0, maxInFlight: 0 };
      const pusher: RelayPusher = {
        push: async (meta, images, opts) => {
          if (!meta.progress) return real.push(meta, images, opts);
          seen.progress++;
          if (how === 'fail') throw new ImagineError('DELIVERY_FAILED', 'relay answered HTTP 503');
          seen.inFlight++;
          seen.maxInFlight = Math.max(seen.maxInFlight, seen.inFlight);
          try {
            await new Promise((_resolve, reject) =>
              opts?.signal?.addEventListener('abort', () => reject(opts.signal?.reason)),
            );
          } finally {
            seen.aborted++;
            seen.inFlight--;
          }
          return { duplicate: false };
        },
      };
      const worker = await startTestImagine(
        { ...env, ...fake.env(), RELAY_URL: relay.url },
        { role: 'worker', pusher },
      );
      cleanups.push(() => worker.stop());

      const job = await enqueueJob(relay.url, `a fox whose progress is lost ${how}`, {
        width: 64,
        height: 64,
        count: 1,
      });
      const frames = await framesOf(job.ws);
      expect(frames.filter((f) => 'binary' in f)).toHaveLength(1);
      expect(frames.some((f) => 'text' in f && f.text.progress !== undefined)).toBe(false);
      expect(frames.find((f) => 'text' in f && f.text.type === 'image')).toBeDefined();
      expect(seen.progress).toBeGreaterThanOrEqual(1);
      if (how === 'hang') {
        // One in flight at a time, and the one hanging was aborted for the final push.
        expect(seen.maxInFlight).toBe(1);
        expect(seen.progress).toBe(1);
        expect(seen.aborted).toBe(1);
      }
    },
  );
});

describe('ProgressForwarder', () => {
  const logger = pino({ level: 'silent' });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('coalesces: the latest report wins, pushes start at least the interval apart', async () => {
    vi.useFakeTimers();
    const sent: Array<number | undefined> = [];
    const forwarder = new ProgressForwarder({
      push: async (p) => {
        sent.push(p?.step);
      },
      intervalMs: 100,
      pollMs: 0,
      onCancelled: () => {},
      logger,
    });
    const report = (step: number): GenerateProgress => ({ step, steps: 20 });
    // The interval counts from the "generating" push; reports within it wait, the latest wins.
    for (let step = 1; step <= 10; step++) forwarder.report(report(step));
    await vi.advanceTimersByTimeAsync(99);
    expect(sent).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(sent).toEqual([10]);
    forwarder.report(report(11));
    forwarder.report(report(12));
    await vi.advanceTimersByTimeAsync(50);
    expect(sent).toEqual([10]);
    await vi.advanceTimersByTimeAsync(50);
    expect(sent).toEqual([10, 12]);
    forwarder.stop();
    forwarder.report(report(13));
    await vi.advanceTimersByTimeAsync(500);
    expect(sent).toEqual([10, 12]);
  });

  it('keeps one push in flight: reports meanwhile wait for it, then the latest goes', async () => {
    vi.useFakeTimers();
    const sent: number[] = [];
    let release: (() => void) | undefined;
    const forwarder = new ProgressForwarder({
      push: (p) => {
        sent.push(p!.step);
        return new Promise<void>((resolve) => {
          release = resolve;
        });
      },
      intervalMs: 10,
      pollMs: 0,
      onCancelled: () => {},
      logger,
    });
    forwarder.report({ step: 1, steps: 9 });
    await vi.advanceTimersByTimeAsync(10);
    expect(sent).toEqual([1]);
    for (let step = 2; step <= 5; step++) forwarder.report({ step, steps: 9 });
    await vi.advanceTimersByTimeAsync(1000);
    expect(sent).toEqual([1]);
    release!();
    await vi.advanceTimersByTimeAsync(0);
    expect(sent).toEqual([1, 5]);
    forwarder.stop();
  });

  it('polls when nothing was pushed for pollMs, and a JOB_CANCELLED answer calls onCancelled', async () => {
    vi.useFakeTimers();
    const sent: Array<number | undefined> = [];
    let cancelled = 0;
    const forwarder = new ProgressForwarder({
      push: async (p) => {
        sent.push(p?.step);
        if (sent.length === 2) throw new ImagineError('JOB_CANCELLED', 'the job was cancelled');
      },
      intervalMs: 10,
      pollMs: 1000,
      onCancelled: () => cancelled++,
      logger,
    });
    await vi.advanceTimersByTimeAsync(999);
    expect(sent).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(sent).toEqual([undefined]);
    await vi.advanceTimersByTimeAsync(1000);
    expect(sent).toEqual([undefined, undefined]);
    expect(cancelled).toBe(1);
    forwarder.stop();
  });

  it('leaves out a preview over 64 KiB but still sends the step', async () => {
    vi.useFakeTimers();
    const sent: GenerateProgress[] = [];
    const forwarder = new ProgressForwarder({
      push: async (p) => {
        sent.push(p!);
      },
      intervalMs: 1,
      pollMs: 0,
      onCancelled: () => {},
      logger,
    });
    forwarder.report({
      step: 3,
      steps: 4,
      preview: { bytes: Buffer.alloc(64 * 1024 + 1), contentType: 'image/jpeg' },
    });
    await vi.advanceTimersByTimeAsync(1);
    expect(sent).toEqual([{ step: 3, steps: 4 }]);
    forwarder.stop();
  });
});
