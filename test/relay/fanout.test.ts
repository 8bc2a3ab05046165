/**
 * Fan-out between relay instances over the real Redis server test/global-setup.ts starts: two
 * relays in one process share job events, so either serves any job's WebSocket and polling
 * clients; chat delivery happens once; without Redis a relay carries on alone.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, inject, it } from 'vitest';
import type { ReplyTarget } from '../../contracts/seal.ts';
import type { ChatDeliverer, DeliveryEvent } from '../../relay/delivery.ts';
import { decodeJobEvent, encodeJobEvent } from '../../relay/fanout.ts';
import { openAdmission } from '../../submit/submit.ts';
import type { Generator } from '../../worker/generator.ts';
import { enqueueJob } from '../helpers/enqueue.ts';
import { pngOf } from '../helpers/images.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { freePort } from '../helpers/net.ts';
import { sendPush } from '../helpers/push.ts';
import { type Followed, followJob, openWaiter } from '../helpers/ws.ts';

const redisUrl = inject('redisUrl');

/** Settings shared by the instances of one test: its own key prefix, channel and queue. */
function sharedEnv(): Record<string, string> {
  const id = randomBytes(6).toString('hex');
  return {
    QUEUE_BACKEND: 'bullmq',
    REDIS_URL: redisUrl,
    REDIS_KEY_PREFIX: `test-fanout-${id}:`,
    BULLMQ_QUEUE: `jobs-${id}`,
  };
}

/** A chat deliverer that only records what it was asked to deliver. */
function recordingDeliverer(): ChatDeliverer & { events: DeliveryEvent[] } {
  const events: DeliveryEvent[] = [];
  return {
    platform: 'slack',
    events,
    deliver: async (_target: ReplyTarget, event: DeliveryEvent) => {
      events.push(event);
    },
  };
}

const wsUrl = (base: string, jobId: string) => `${base.replace('http', 'ws')}/ws?jobId=${jobId}`;

describe('relay fan-out over Redis', () => {
  const cleanups: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  async function start(...args: Parameters<typeof startTestImagine>) {
    const app = await startTestImagine(...args);
    cleanups.push(() => app.stop());
    return app;
  }

  it('encodes an event and its image as one binary message, byte for byte', async () => {
    const png = await pngOf(8, 8);
    const event = {
      v: 1,
      from: 'x',
      kind: 'change',
      jobId: 'A'.repeat(24),
      state: 'done',
      seed: 3,
    } as const;
    const message = encodeJobEvent(event, [png.subarray(0, 10), png.subarray(10)]);
    expect(message.includes(Buffer.from(png.toString('base64')))).toBe(false);
    const decoded = decodeJobEvent(message);
    expect(decoded.event).toEqual(event);
    expect(decoded.images).toHaveLength(1);
    expect(decoded.images[0]?.equals(png)).toBe(true);
    expect(() => decodeJobEvent(message.subarray(0, 6))).toThrow();
  });

  it('splits the images of a job of N by the lengths the header lists, and refuses a mismatch', async () => {
    const pngs = await Promise.all([1, 2, 3].map((n) => pngOf(8 * n, 8)));
    const event = {
      v: 1,
      from: 'x',
      kind: 'change',
      jobId: 'A'.repeat(24),
      state: 'done',
      count: 3,
      images: pngs.map((p, i) => ({ size: p.length, seed: 10 + i, width: 8 * (i + 1), height: 8 })),
    } as const;
    const decoded = decodeJobEvent(encodeJobEvent(event, pngs));
    expect(decoded.images.map((b, i) => b.equals(pngs[i]!))).toEqual([true, true, true]);
    expect(() => decodeJobEvent(encodeJobEvent(event, pngs.slice(0, 2)))).toThrow(/add up/);
  });

  it('serves a job queued on A to WebSocket and polling clients on B, with the image pushed to A', async () => {
    const env = sharedEnv();
    const a = await start(env, { role: 'relay' });
    const b = await start(env, { role: 'relay' });
    const job = await enqueueJob(a.url, 'a fox seen from two relays');

    const polled = await fetch(`${b.url}/jobs/${job.jobId}`);
    expect(polled.status).toBe(200);
    expect(await polled.json()).toMatchObject({ state: 'queued', position: 0 });
    const onB = await waiter(wsUrl(b.url, job.jobId));
    const onA = await waiter(job.ws);
    const png = await pngOf(24, 24, { r: 10, g: 200, b: 30 });
    const res = await sendPush(
      a.url,
      { jobId: job.jobId, status: 'done', contentType: 'image/png', seed: job.seed },
      png,
    );
    expect(await res.json()).toMatchObject({ duplicate: false, state: 'done' });

    const got = await onB.closed;
    expect(got.binaries).toHaveLength(1);
    expect(got.binaries[0]!.equals(png)).toBe(true);
    expect(got.texts.find((t) => t.type === 'image')).toMatchObject({ bytes: png.length });
    expect((await onA.closed).binaries[0]!.equals(png)).toBe(true);
    const state = (await (await fetch(`${b.url}/jobs/${job.jobId}`)).json()) as Record<
      string,
      unknown
    >;
    expect(state).toMatchObject({ state: 'done', contentType: 'image/png', bytes: png.length });
    const image = await fetch(`${b.url}/jobs/${job.jobId}/image`);
    expect(Buffer.from(await image.arrayBuffer()).equals(png)).toBe(true);
  });

  it('a job of four pushed to A reaches B in order: WS frames per image, ?i= serves each, seeds kept', async () => {
    const env = sharedEnv();
    const a = await start(env, { role: 'relay' });
    const b = await start(env, { role: 'relay' });
    const job = await enqueueJob(a.url, 'four foxes seen from two relays');
    const onB = await waiter(wsUrl(b.url, job.jobId));
    const pngs = await Promise.all([0, 1, 2, 3].map((i) => pngOf(20 + i, 20)));
    const images = pngs.map((_, i) => ({
      contentType: 'image/png',
      seed: job.seed + i,
      width: 20 + i,
      height: 20,
    }));
    await sendPush(
      a.url,
      { jobId: job.jobId, status: 'done', seed: job.seed, count: 4, images },
      pngs,
    );
    const got = await onB.closed;
    expect(got.binaries.map((bin, i) => bin.equals(pngs[i]!))).toEqual([true, true, true, true]);
    expect(got.texts.filter((t) => t.type === 'image').map((t) => [t.index, t.seed])).toEqual(
      images.map((image, i) => [i, image.seed]),
    );
    const third = await fetch(`${b.url}/jobs/${job.jobId}/image?i=2`);
    expect(Buffer.from(await third.arrayBuffer()).equals(pngs[2]!)).toBe(true);
  });

  it("delivers a worker's push to B to a waiter on A, and a repeat on A is a duplicate", async () => {
    const env = sharedEnv();
    const png = await pngOf(32, 32, { r: 200, g: 20, b: 90 });
    const fixed: Generator = {
      name: 'fixed',
      generate: async (req) =>
        req.seeds.map((seed) => ({
          bytes: png,
          contentType: 'image/png',
          seed,
          width: req.width,
          height: req.height,
        })),
    };
    const a = await start(env, { role: 'relay' });
    const b = await start(env, { role: 'relay' });
    const job = await enqueueJob(a.url, 'pushed to the other relay');
    const onA = followJob(job.ws);
    await start({ ...env, RELAY_URL: b.url }, { role: 'worker', generator: fixed });

    const got = await onA;
    expect(got.texts.map((t) => t.state).filter(Boolean)).toContain('generating');
    expect(got.binaries).toHaveLength(1);
    expect(got.binaries[0]!.equals(png)).toBe(true);
    // B received the worker's push itself.
    const onB = (await (await fetch(`${b.url}/jobs/${job.jobId}`)).json()) as { state: string };
    expect(onB.state).toBe('done');

    const other = await pngOf(32, 32, { r: 0, g: 0, b: 255 });
    const repeat = await sendPush(
      a.url,
      { jobId: job.jobId, status: 'done', contentType: 'image/png' },
      other,
    );
    expect(await repeat.json()).toMatchObject({ duplicate: true, state: 'done' });
    const kept = await fetch(`${a.url}/jobs/${job.jobId}/image`);
    expect(Buffer.from(await kept.arrayBuffer()).equals(png)).toBe(true);
  });

  it('delivers a chat reply target exactly once, from the relay that received the push', async () => {
    const env = sharedEnv();
    const chatA = recordingDeliverer();
    const chatB = recordingDeliverer();
    const a = await start(env, { role: 'relay', deliverers: [chatA] });
    const b = await start(env, { role: 'relay', deliverers: [chatB] });
    // A chat command on A: a job with a sealed reply target.
    const { job } = await a.relay!.relay.submit({
      request: { prompt: 'a chat job', width: 64, height: 64 },
      origin: { platform: 'slack', userId: 'U1', scopeId: 'T1' },
      replyTarget: { platform: 'slack', channelId: 'C1', userId: 'U1' },
    });
    const onA = await waiter(wsUrl(a.url, job.jobId));
    // The worker carries the sealed target back, to B.
    const meta = { jobId: job.jobId, replyTarget: job.replyTarget };
    await sendPush(b.url, { ...meta, status: 'generating' });
    const png = await pngOf(16, 16);
    await sendPush(b.url, { ...meta, status: 'done', contentType: 'image/png' }, png);
    // A applied B's events (its waiter got the image) before any delivery could start there.
    expect((await onA.closed).binaries[0]!.equals(png)).toBe(true);
    const dup = await sendPush(a.url, { ...meta, status: 'done', contentType: 'image/png' }, png);
    expect(await dup.json()).toMatchObject({ duplicate: true });
    await a.relay!.relay.delivery.drain();
    await b.relay!.relay.delivery.drain();

    expect(chatA.events.map((e) => e.state)).toEqual(['queued']);
    expect(chatB.events.map((e) => e.state)).toEqual(['generating', 'done']);
    expect(chatB.events[1]!.images?.[0]?.bytes.equals(png)).toBe(true);
    // Outcomes are counted once, where the push arrived.
    expect(await doneCount(a.url)).toBe(0);
    expect(await doneCount(b.url)).toBe(1);
  });

  it('keeps serving the whole flow locally when Redis cannot be reached', async () => {
    const closedPort = await freePort();
    // Moderation would refuse to start without its Redis; fan-out must not.
    const app = await start(
      { REDIS_URL: `redis://127.0.0.1:${closedPort}` },
      { admission: openAdmission },
    );
    expect(app.relay!.relay.fanout).toBeDefined();
    const job = await enqueueJob(app.url, 'a fox with no redis');
    const got = await followJob(job.ws);
    expect(got.binaries).toHaveLength(1);
    const state = (await (await fetch(`${app.url}/jobs/${job.jobId}`)).json()) as {
      state: string;
    };
    expect(state.state).toBe('done');
  });
});

/**
 * A WebSocket waiter that has received its first frame (`queued`), so it is registered on that
 * relay before anything is pushed; `closed` has every frame once the server closes it.
 */
async function waiter(url: string): Promise<{ closed: Promise<Followed> }> {
  const { frames, closed } = await openWaiter(url);
  expect(frames.texts[0]).toMatchObject({ type: 'status', state: 'queued' });
  return { closed };
}

/** `imagine_jobs_total{outcome="done"}` of one relay. */
async function doneCount(base: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('imagine_jobs_total{outcome="done"}'));
  return line ? Number(line.split(' ').at(-1)) : 0;
}
