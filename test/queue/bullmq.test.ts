/**
 * The BullMQ backend against the real Redis server test/global-setup.ts starts: the web flow,
 * split relay and worker, malformed jobs, idempotent sends, retries and shutdown hand-back.
 */
import { randomBytes } from 'node:crypto';
import { Queue } from 'bullmq';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import { loadConfig } from '../../contracts/config.ts';
import type { Job } from '../../contracts/job.ts';
import { BullJobQueue } from '../../queue/bullmq.ts';
import { type FakeGeneratorEndpoint, startFakeGenerator } from '../fakes/generator-endpoint.ts';
import { enqueueJob } from '../helpers/enqueue.ts';
import { startTestImagine, TEST_SECRET } from '../helpers/imagine.ts';
import { followJob } from '../helpers/ws.ts';

const redisUrl = inject('redisUrl');

/** A queue of its own for one test: a unique name and key prefix (rate limits included). */
function isolatedQueue() {
  const id = randomBytes(6).toString('hex');
  const prefix = `test-${id}:`;
  const queueName = `jobs-${id}`;
  const env = {
    QUEUE_BACKEND: 'bullmq',
    REDIS_URL: redisUrl,
    REDIS_KEY_PREFIX: prefix,
    BULLMQ_QUEUE: queueName,
  };
  // Looks straight into Redis, as an operator with a BullMQ dashboard would.
  const inspect = new Queue(queueName, { connection: { url: redisUrl }, prefix: `${prefix}bull` });
  return { env, inspect, queueName, prefix };
}

describe('BullMQ backend', () => {
  let fake: FakeGeneratorEndpoint;
  const generatorEnv = () => fake.env();
  const started = (prompt: string) => fake.started(prompt);
  const cleanups: Array<() => Promise<unknown>> = [];

  beforeAll(async () => {
    fake = await startFakeGenerator();
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    fake.delayMs = 0;
    fake.mode = 'ok';
  });
  afterAll(async () => {
    await fake?.close();
  });

  /** Start an instance and stop it after the test. */
  async function start(env: Record<string, string>) {
    const app = await startTestImagine(env);
    cleanups.push(() => app.stop());
    return app;
  }
  function queueForTest() {
    const q = isolatedQueue();
    cleanups.push(() => q.inspect.close());
    return q;
  }

  it('runs the web flow: enqueue, then the image on the WebSocket', async () => {
    const { env, inspect } = queueForTest();
    const app = await start(env);
    expect(app.queueBackend).toBe('bullmq');
    expect(app.sqs).toBeUndefined();
    const health = (await (await fetch(`${app.url}/healthz`)).json()) as { queue: string };
    expect(health.queue).toBe('bullmq');

    const job = await enqueueJob(app.url, 'a fox over Redis');
    const got = await followJob(job.ws);
    expect(got.binaries).toHaveLength(1);
    expect(got.texts.some((t) => t.type === 'image')).toBe(true);
    // The job went through this queue in Redis, under its own id, and holds no image.
    const stored = await inspect.getJob(job.jobId);
    expect(await stored?.getState()).toBe('completed');
    expect(stored?.data).toMatchObject({ jobId: job.jobId, prompt: 'a fox over Redis' });
    expect(JSON.stringify(stored?.data).length).toBeLessThan(2000);
  });

  it('splits relay and worker: a relay-only and a worker-only instance share the queue', async () => {
    const { env, inspect } = queueForTest();
    const relay = await start({ ...env, ROLE: 'relay' });
    expect(relay.worker).toBeUndefined();

    const job = await enqueueJob(relay.url, 'split roles');
    const watching = followJob(job.ws, 20_000);
    // No worker yet: the job waits in Redis.
    expect(await inspect.getWaitingCount()).toBe(1);
    const polled = (await (await fetch(`${relay.url}/jobs/${job.jobId}`)).json()) as {
      state: string;
    };
    expect(polled.state).toBe('queued');

    const worker = await start({ ...env, ROLE: 'worker', RELAY_URL: relay.url });
    expect(worker.relay).toBeUndefined();
    const got = await watching;
    expect(got.binaries).toHaveLength(1);
    expect(await (await inspect.getJob(job.jobId))?.getState()).toBe('completed');
  });

  it('fails a malformed job at once, keeps it in the failed set, and keeps serving', async () => {
    const { env, inspect } = queueForTest();
    const app = await start(env);
    const bad = [
      await inspect.add('imagine', 'this is not a job', { attempts: 3 }),
      await inspect.add('imagine', { v: 1, jobId: 'x', prompt: 5 }, { attempts: 3 }),
    ];
    await vi.waitFor(async () => expect(await inspect.getFailedCount()).toBe(2), {
      timeout: 10_000,
      interval: 100,
    });
    for (const { id } of bad) {
      const failed = await inspect.getJob(id!);
      expect(failed?.failedReason).toBe('malformed job');
      // Not retried although it had attempts left.
      expect(failed?.attemptsStarted).toBe(1);
      expect(await failed?.getState()).toBe('failed');
    }

    const job = await enqueueJob(app.url, 'still alive');
    const got = await followJob(job.ws);
    expect(got.binaries).toHaveLength(1);
  });

  it('does not run a job twice when it is sent twice', async () => {
    const { env, inspect, queueName, prefix } = queueForTest();
    const app = await start({ ...env, ...generatorEnv(), WORKER_CONCURRENCY: '1' });
    fake.delayMs = 500;
    const job = await enqueueJob(app.url, 'only once');
    const watching = followJob(job.ws, 20_000);
    await vi.waitFor(() => expect(started('only once')).toBe(1), { timeout: 10_000 });

    // The very job the relay sent, sent again while it runs (an at-least-once producer retry).
    const data = (await inspect.getJob(job.jobId))?.data as Job;
    const again = new BullJobQueue({
      redisUrl,
      queueName,
      prefix: `${prefix}bull`,
      attempts: 3,
      backoffMs: 0,
    });
    cleanups.push(() => again.close());
    await again.send(data);
    await again.send(data);
    expect((await watching).binaries).toHaveLength(1);

    // One worker slot, FIFO: a duplicate in the queue would run before this later job.
    fake.delayMs = 0;
    const later = await enqueueJob(app.url, 'after the duplicates');
    expect((await followJob(later.ws)).binaries).toHaveLength(1);
    expect(started('only once')).toBe(1);
    expect(await inspect.getJobCounts('waiting', 'active', 'completed', 'failed')).toEqual({
      waiting: 0,
      active: 0,
      completed: 2,
      failed: 0,
    });
  });

  it('counts attempts: a retryable failure is retried, and the last attempt tells the user', async () => {
    const { env, inspect } = queueForTest();
    const app = await start({
      ...env,
      ...generatorEnv(),
      BULLMQ_ATTEMPTS: '2',
      BULLMQ_BACKOFF_SECONDS: '0',
    });
    fake.mode = 'unavailable';
    const job = await enqueueJob(app.url, 'no GPU today');
    const got = await followJob(job.ws, 20_000);
    expect(got.binaries).toHaveLength(0);
    const failed = got.texts.find((t) => t.state === 'failed');
    expect(failed?.error).toMatchObject({ code: 'GENERATOR_UNAVAILABLE' });
    expect(started('no GPU today')).toBe(2);
    // The handler reported the failure itself on attempt 2, so the job ended normally.
    const stored = await inspect.getJob(job.jobId);
    expect(stored?.attemptsStarted).toBe(2);
    expect(await stored?.getState()).toBe('completed');
  });

  it('retries a job whose first attempt failed, into an image', async () => {
    const { env } = queueForTest();
    const app = await start({ ...env, ...generatorEnv(), BULLMQ_BACKOFF_SECONDS: '0' });
    fake.mode = 'fail-once';
    const job = await enqueueJob(app.url, 'second time lucky');
    const got = await followJob(job.ws, 20_000);
    expect(got.binaries).toHaveLength(1);
    expect(started('second time lucky')).toBe(2);
  });

  it('lets a running job finish and deliver before the worker stops', async () => {
    const { env } = queueForTest();
    const relay = await start({ ...env, ROLE: 'relay' });
    const worker = await startTestImagine({
      ...env,
      ...generatorEnv(),
      ROLE: 'worker',
      RELAY_URL: relay.url,
      WORKER_DRAIN_SECONDS: '20',
    });
    cleanups.push(() => worker.stop());
    fake.delayMs = 1500;
    const job = await enqueueJob(relay.url, 'finish me first');
    const watching = followJob(job.ws, 20_000);
    await vi.waitFor(() => expect(started('finish me first')).toBe(1), { timeout: 10_000 });
    await worker.stop();
    expect((await watching).binaries).toHaveLength(1);
    expect(started('finish me first')).toBe(1);
  });

  it('hands a job cut short by shutdown back to the queue, and the next worker finishes it', async () => {
    const { env, inspect } = queueForTest();
    const relay = await start({ ...env, ROLE: 'relay' });
    const workerEnv = { ...env, ...generatorEnv(), ROLE: 'worker', RELAY_URL: relay.url };
    fake.delayMs = 5000;
    const first = await startTestImagine({ ...workerEnv, WORKER_DRAIN_SECONDS: '0' });
    cleanups.push(() => first.stop());
    const job = await enqueueJob(relay.url, 'survive a restart');
    const watching = followJob(job.ws, 30_000);
    await vi.waitFor(() => expect(started('survive a restart')).toBe(1), { timeout: 10_000 });
    await first.stop();
    // Back in the waiting list, not failed and not lost.
    expect(await (await inspect.getJob(job.jobId))?.getState()).toBe('waiting');

    fake.delayMs = 0;
    await start(workerEnv);
    const got = await watching;
    expect(got.binaries).toHaveLength(1);
    expect(started('survive a restart')).toBe(2);
    expect(await (await inspect.getJob(job.jobId))?.getState()).toBe('completed');
  }, 40_000);
});

describe('BullMQ configuration', () => {
  it('requires REDIS_URL and RELAY_SECRET, and allows the role split without SQS', () => {
    expect(() => loadConfig({ QUEUE_BACKEND: 'bullmq', RELAY_SECRET: TEST_SECRET })).toThrow(
      /^\s*REDIS_URL: required when QUEUE_BACKEND=bullmq/m,
    );
    expect(() => loadConfig({ QUEUE_BACKEND: 'bullmq', REDIS_URL: 'redis://127.0.0.1:1' })).toThrow(
      /^\s*RELAY_SECRET: required/m,
    );
    expect(() =>
      loadConfig({
        QUEUE_BACKEND: 'bullmq',
        REDIS_URL: 'redis://127.0.0.1:1',
        RELAY_SECRET: TEST_SECRET,
        SQS_QUEUE_URL: 'https://sqs.us-east-1.amazonaws.com/1/q',
      }),
    ).toThrow(/^\s*SQS_QUEUE_URL: not used/m);
    expect(() => loadConfig({ QUEUE_BACKEND: 'rabbitmq' })).toThrow(/^\s*QUEUE_BACKEND=/m);
    for (const ROLE of ['relay', 'worker']) {
      const config = loadConfig({
        ROLE,
        QUEUE_BACKEND: 'bullmq',
        REDIS_URL: 'redis://127.0.0.1:1',
        RELAY_SECRET: TEST_SECRET,
      });
      expect(config).toMatchObject({ ROLE, embedded: false, BULLMQ_QUEUE: 'imagine-jobs' });
    }
    // SQS stays the default, and a split without any shared queue is still refused.
    expect(loadConfig({})).toMatchObject({ QUEUE_BACKEND: 'sqs', embedded: true });
    expect(() => loadConfig({ ROLE: 'worker' })).toThrow(/ROLE=worker/);
  });
});
