/**
 * Cancel end to end (issue 11): a queued job cancelled on one relay never reaches the generator
 * of a worker pushing through another (or through a relay started after the cancel); a running
 * job's generator call is aborted (the fake generator sees its connection close); quota and
 * concurrency go back; `cancelled` is said exactly once on the WebSocket and in chat.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { ChatDeliverer, DeliveryEvent } from '../../contracts/delivery.ts';
import { ImagineError } from '../../contracts/errors.ts';
import type { Generator } from '../../worker/generator.ts';
import { createRelayPusher, type RelayPusher } from '../../worker/push-client.ts';
import { type FakeGeneratorEndpoint, startFakeGenerator } from '../fakes/generator-endpoint.ts';
import { enqueueJob } from '../helpers/enqueue.ts';
import { pngOf } from '../helpers/images.ts';
import { startTestImagine, TEST_SECRET } from '../helpers/imagine.ts';
import { openWaiter } from '../helpers/ws.ts';

const redisUrl = inject('redisUrl');

function sharedEnv(): Record<string, string> {
  const id = randomBytes(6).toString('hex');
  return {
    QUEUE_BACKEND: 'bullmq',
    REDIS_URL: redisUrl,
    REDIS_KEY_PREFIX: `test-cancel-${id}:`,
    BULLMQ_QUEUE: `jobs-${id}`,
  };
}

/** Wait until `check` holds (a few seconds at most). */
async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** A generator that counts its calls and makes a small PNG. */
function countingGenerator(): Generator & { calls: string[] } {
  const calls: string[] = [];
  return {
    name: 'counting',
    calls,
    generate: async (req) => {
      calls.push(req.prompt);
      const bytes = await pngOf(req.width, req.height);
      return req.seeds.map((seed) => ({
        bytes,
        contentType: 'image/png' as const,
        seed,
        width: req.width,
        height: req.height,
      }));
    },
  };
}

/** A pusher to `relayUrl` that notes every refusal's code. */
function notingPusher(relayUrl: string): RelayPusher & { refusals: string[] } {
  const real = createRelayPusher({ relayUrl, secret: TEST_SECRET });
  const refusals: string[] = [];
  return {
    refusals,
    push: async (...args) => {
      try {
        return await real.push(...args);
      } catch (err) {
        refusals.push(err instanceof ImagineError ? err.code : String(err));
        throw err;
      }
    },
  };
}

function recordingDeliverer(): ChatDeliverer & { events: DeliveryEvent[] } {
  const events: DeliveryEvent[] = [];
  return {
    platform: 'slack',
    events,
    deliver: async (_target, event) => {
      events.push(event);
    },
  };
}

const wsUrl = (base: string, jobId: string) => `${base.replace('http', 'ws')}/ws?jobId=${jobId}`;
const cancel = (base: string, jobId: string) =>
  fetch(`${base}/jobs/${jobId}`, { method: 'DELETE' });

describe('cancel of a queued job, across relays sharing Redis', () => {
  const cleanups: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  async function start(...args: Parameters<typeof startTestImagine>) {
    const app = await startTestImagine(...args);
    cleanups.push(() => app.stop());
    return app;
  }

  it('cancelled on A, the worker pushing through B skips it: the generator is never called', async () => {
    const env = sharedEnv();
    const a = await start(env, { role: 'relay' });
    const b = await start(env, { role: 'relay' });
    const job = await enqueueJob(a.url, 'a fox nobody wants', { width: 64, height: 64, count: 1 });
    const onB = await openWaiter(wsUrl(b.url, job.jobId));
    const res = await cancel(a.url, job.jobId);
    expect(res.status).toBe(200);
    // B's waiter is told, once, by fan-out.
    const seenOnB = await onB.closed;
    expect(seenOnB.texts.filter((t) => t.state === 'cancelled')).toHaveLength(1);
    expect(seenOnB.closeReason).toBe('cancelled');

    const generator = countingGenerator();
    const pusher = notingPusher(b.url);
    await start({ ...env, RELAY_URL: b.url }, { role: 'worker', generator, pusher });
    await until(() => pusher.refusals.includes('JOB_CANCELLED'), 'the worker to learn the cancel');
    // A later job goes through, so the worker is alive and has moved past the cancelled one.
    const next = await enqueueJob(a.url, 'a fox somebody wants', {
      width: 64,
      height: 64,
      count: 1,
    });
    const after = await openWaiter(next.ws);
    expect((await after.closed).binaries).toHaveLength(1);
    expect(generator.calls).toEqual(['a fox somebody wants']);
    const polled = (await (await fetch(`${b.url}/jobs/${job.jobId}`)).json()) as { state: string };
    expect(polled.state).toBe('cancelled');
  });

  it('a relay started after the cancel (and after the cancelling relay stopped) still refuses the start', async () => {
    const env = sharedEnv();
    const a = await startTestImagine(env, { role: 'relay' });
    const job = await enqueueJob(a.url, 'a fox cancelled before a restart', {
      width: 64,
      height: 64,
      count: 1,
    });
    expect((await cancel(a.url, job.jobId)).status).toBe(200);
    await a.stop();
    // B never saw the fan-out event: it learns the cancel from the ledger in Redis.
    const b = await start(env, { role: 'relay' });
    const generator = countingGenerator();
    const pusher = notingPusher(b.url);
    await start({ ...env, RELAY_URL: b.url }, { role: 'worker', generator, pusher });
    await until(() => pusher.refusals.includes('JOB_CANCELLED'), 'the worker to learn the cancel');
    await sleep(200);
    expect(generator.calls).toEqual([]);
    const res = await cancel(b.url, job.jobId);
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({
      error: { code: 'ALREADY_FINISHED' },
      state: 'cancelled',
    });
  });
});

describe('progress across relays, and to chat', () => {
  const cleanups: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('a progress push to A reaches a waiter on B with its preview; chat hears at most one a second', async () => {
    const env = sharedEnv();
    const chat = recordingDeliverer();
    const a = await startTestImagine(env, { role: 'relay', deliverers: [chat] });
    cleanups.push(() => a.stop());
    const b = await startTestImagine(env, { role: 'relay' });
    cleanups.push(() => b.stop());
    const { job } = await a.relay!.frontDoor.submit({
      request: {
        prompt: 'a fox seen progressing from two relays',
        width: 64,
        height: 64,
        count: 1,
      },
      origin: { platform: 'slack', userId: 'U1', scopeId: 'T1' },
      replyTarget: { platform: 'slack', channelId: 'C1', userId: 'U1' },
    });
    const pusher = createRelayPusher({ relayUrl: a.url, secret: TEST_SECRET });
    const meta = { jobId: job.jobId, replyTarget: job.replyTarget };
    await pusher.push({ ...meta, status: 'generating' });
    const onB = await openWaiter(wsUrl(b.url, job.jobId));
    const preview = await pngOf(8, 8, { r: 1, g: 2, b: 3 });
    // Ten reports in a burst, each answered before the next is sent.
    for (let step = 1; step <= 10; step++)
      await pusher.push(
        {
          ...meta,
          status: 'generating',
          progress: { step, steps: 10 },
          ...(step === 10 ? { preview: { contentType: 'image/png' as const } } : {}),
        },
        undefined,
        step === 10 ? { preview } : {},
      );
    await until(() => onB.frames.previews.length === 1, "B's waiter to get the preview");
    const steps = onB.frames.texts.filter((t) => t.progress !== undefined).map((t) => t.step);
    expect(steps).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(onB.frames.previews[0]!.equals(preview)).toBe(true);
    await sleep(1300);
    const png = await pngOf(64, 64);
    await pusher.push({ ...meta, status: 'done', contentType: 'image/png' }, png);
    await onB.closed;
    await a.relay!.relay.delivery.drain();
    const reports = chat.events.filter((e) => e.state === 'generating' && e.progress !== undefined);
    // The burst took well under a second: chat got one report of it (the latest), or two.
    expect(reports.length).toBeGreaterThanOrEqual(1);
    expect(reports.length).toBeLessThanOrEqual(2);
    expect(reports.at(-1)?.progress).toBe(1);
    expect(chat.events.at(-1)?.state).toBe('done');
  });
});

describe('cancel of a running job', () => {
  let fake: FakeGeneratorEndpoint;
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  const chat = recordingDeliverer();
  beforeAll(async () => {
    fake = await startFakeGenerator();
    app = await startTestImagine({ ...fake.env(), PROGRESS_PUSH_MS: '20' }, { deliverers: [chat] });
  });
  afterAll(async () => {
    await app?.stop();
    await fake?.close();
  });

  it('aborts the generator call (the fake sees the connection close); cancelled is said once everywhere', async () => {
    fake.streamSteps = 100;
    fake.stepMs = 50;
    fake.streamPreviews = false;
    const abandoned = fake.streamsAbandoned;
    const prompt = 'a fox stopped halfway';
    const { job } = await app.relay!.frontDoor.submit({
      request: { prompt, width: 64, height: 64, count: 1 },
      origin: { platform: 'slack', userId: 'U1', scopeId: 'T1' },
      replyTarget: { platform: 'slack', channelId: 'C1', userId: 'U1' },
    });
    const waiter = await openWaiter(wsUrl(app.url, job.jobId));
    await until(
      () => waiter.frames.texts.some((t) => t.progress !== undefined),
      'a progress frame',
    );
    // Chat hears the progress too (as a fraction). Wait for it: a report still waiting in the
    // chat lane when the cancel comes is rightly dropped for the final word.
    const heardProgress = () =>
      chat.events.some(
        (e) => e.jobId === job.jobId && e.state === 'generating' && typeof e.progress === 'number',
      );
    await until(heardProgress, 'chat to hear a progress report');
    const result = await app.relay!.frontDoor.cancel(job.jobId, {
      platform: 'slack',
      userId: 'U1',
      isModerator: false,
    });
    expect(result).toEqual({ outcome: 'cancelled', jobId: job.jobId });
    const seen = await waiter.closed;
    await until(() => fake.streamsAbandoned > abandoned, 'the generator connection to close', 5000);
    expect(fake.started(prompt)).toBe(1);
    expect(seen.texts.filter((t) => t.state === 'cancelled')).toHaveLength(1);
    expect(seen.binaries).toHaveLength(0);
    // Nothing the worker does afterwards changes it (no "failed" push over it).
    await sleep(300);
    const polled = (await (await fetch(`${app.url}/jobs/${job.jobId}`)).json()) as {
      state: string;
    };
    expect(polled.state).toBe('cancelled');
    await app.relay!.relay.delivery.drain();
    const mine = chat.events.filter((e) => e.jobId === job.jobId);
    expect(mine.filter((e) => e.state === 'cancelled')).toHaveLength(1);
    expect(mine.at(-1)?.state).toBe('cancelled');
  });

  it('a generator that reports no progress is stopped through the cancel poll', async () => {
    const local = await startTestImagine(
      { CANCEL_POLL_MS: '100' },
      {
        generator: {
          name: 'silent',
          generate: (_req, { signal }) =>
            new Promise((_resolve, reject) => {
              aborted.started++;
              signal.addEventListener('abort', () => {
                aborted.count++;
                reject(signal.reason);
              });
            }),
        },
      },
    );
    const aborted = { started: 0, count: 0 };
    try {
      const job = await enqueueJob(local.url, 'a silent fox', { width: 64, height: 64, count: 1 });
      await until(() => aborted.started === 1, 'the generator to start');
      const waiter = await openWaiter(job.ws);
      expect((await cancel(local.url, job.jobId)).status).toBe(200);
      await until(() => aborted.count === 1, 'the generator call to be aborted', 5000);
      const seen = await waiter.closed;
      expect(seen.texts.map((t) => t.state).filter((s) => s === 'cancelled')).toHaveLength(1);
    } finally {
      await local.stop();
    }
  });
});

describe('a cancelled queued job gives its quota and slot back', () => {
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  beforeAll(async () => {
    // No worker: the job stays queued. One image and one job at a time per user.
    app = await startTestImagine(
      { LIMIT_IMAGES_PER_USER: '1', LIMIT_CONCURRENT_PER_USER: '1' },
      { role: 'relay' },
    );
  });
  afterAll(async () => {
    await app?.stop();
  });

  it('the user at their limit can submit again after cancelling', async () => {
    const first = await enqueueJob(app.url, 'a fox at the limit', {
      width: 64,
      height: 64,
      count: 1,
    });
    const refused = await fetch(`${app.url}/enqueue`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'one more fox', width: 64, height: 64, count: 1 }),
    });
    expect(refused.status).toBe(429);
    expect(await refused.json()).toMatchObject({ error: { code: 'RATE_LIMITED' } });
    expect((await cancel(app.url, first.jobId)).status).toBe(200);
    let again: Response | undefined;
    // The slot's release is a store write on its way: allow it a moment.
    for (let i = 0; i < 50; i++) {
      again = await fetch(`${app.url}/enqueue`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'one more fox', width: 64, height: 64, count: 1 }),
      });
      if (again.status === 202) break;
      await sleep(20);
    }
    expect(again?.status).toBe(202);
  });
});
