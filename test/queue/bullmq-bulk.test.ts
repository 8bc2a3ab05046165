/**
 * The BullMQ producer coalesces the sends of one event-loop turn into one `addBulk`, against the
 * real Redis server: every job arrives, a resend stays a no-op, a lone job is a plain `add`,
 * sends made while a bulk is on its way go together once it answers, and a bulk Redis refuses
 * fails each of its jobs, whose submitters give back everything they took.
 */
import { randomBytes } from 'node:crypto';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, inject, it, vi } from 'vitest';
import type { ImagineError } from '../../contracts/errors.ts';
import type { Job } from '../../contracts/job.ts';
import { BullJobQueue } from '../../queue/bullmq.ts';
import { ctx, redisBackend, submitterFor } from '../moderation/helpers.ts';

const redisUrl = inject('redisUrl');

function jobFor(jobId: string): Job {
  const submitted = ctx();
  return {
    v: 1,
    jobId,
    task: 'generate',
    count: 1,
    prompt: 'a fox',
    params: submitted.params,
    origin: submitted.origin,
    createdAt: Date.now(),
    expiresAt: Date.now() + 60_000,
  };
}

describe('BullMQ sends of one turn', () => {
  const cleanups: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    vi.restoreAllMocks();
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  function queues(url = redisUrl) {
    const id = randomBytes(6).toString('hex');
    const opts = { queueName: `bulk-${id}`, prefix: `test-${id}:bull`, attempts: 3, backoffMs: 10 };
    const producer = new BullJobQueue({ ...opts, redisUrl: url });
    const inspect = new Queue(opts.queueName, {
      connection: { url: redisUrl },
      prefix: opts.prefix,
    });
    cleanups.push(
      () => producer.close(),
      () => inspect.close(),
    );
    return { producer, inspect };
  }

  it('share one addBulk; every job is queued once, with its options, and a lone job is not held', async () => {
    const { producer, inspect } = queues();
    const addBulk = vi.spyOn(Queue.prototype, 'addBulk');
    const add = vi.spyOn(Queue.prototype, 'add');
    const ids = Array.from(
      { length: 7 },
      (_, i) => `bulk-job-${i}-${randomBytes(4).toString('hex')}`,
    );
    // The same job twice in one bulk is still one job (its id is the BullMQ id).
    await Promise.all([...ids, ids[0]!].map((id) => producer.send(jobFor(id))));
    expect(addBulk).toHaveBeenCalledTimes(1);
    expect(addBulk.mock.calls[0]![0]).toHaveLength(8);
    expect(await inspect.getWaitingCount()).toBe(7);
    const stored = await inspect.getJob(ids[3]!);
    expect(stored?.data).toMatchObject({ jobId: ids[3] });
    expect(stored?.opts).toMatchObject({
      attempts: 3,
      backoff: { type: 'exponential', delay: 10 },
    });
    // Alone, a job is added as it is: no pipeline to build.
    await producer.send(jobFor('lone-job'));
    expect(addBulk).toHaveBeenCalledTimes(1);
    expect(add).toHaveBeenCalledTimes(1);
    expect(add.mock.calls[0]![1]).toMatchObject({ jobId: 'lone-job' });
    expect(add.mock.calls[0]![2]).toMatchObject({ jobId: 'lone-job', attempts: 3 });
    expect(await inspect.getWaitingCount()).toBe(8);
    expect((await inspect.getJob('lone-job'))?.opts).toMatchObject({
      attempts: 3,
      backoff: { type: 'exponential', delay: 10 },
    });
  });

  it('sends made while a bulk is on its way go together once it answers', async () => {
    const { producer, inspect } = queues();
    const original = Queue.prototype.addBulk;
    const addBulk = vi.spyOn(Queue.prototype, 'addBulk');
    const add = vi.spyOn(Queue.prototype, 'add');
    // The first bulk answers late (a slow Redis): everything sent meanwhile waits for it.
    let release!: () => void;
    const late = new Promise<void>((resolve) => {
      release = resolve;
    });
    // Let go before the producer closes, whatever failed (its close waits for the bulk).
    cleanups.push(async () => release());
    addBulk.mockImplementationOnce(async function (this: Queue, jobs) {
      await late;
      return original.call(this, jobs);
    });
    const first = ['slow-a', 'slow-b'].map((id) => producer.send(jobFor(id)));
    await new Promise((r) => setImmediate(r));
    expect(addBulk).toHaveBeenCalledTimes(1);
    // Three sends in three turns, each alone, while the first bulk is on its way.
    const later: Promise<void>[] = [];
    for (const id of ['next-c', 'next-d', 'next-e']) {
      later.push(producer.send(jobFor(id)));
      await new Promise((r) => setImmediate(r));
    }
    expect(addBulk).toHaveBeenCalledTimes(1);
    expect(add).not.toHaveBeenCalled();
    release();
    await Promise.all([...first, ...later]);
    expect(add).not.toHaveBeenCalled();
    expect(addBulk).toHaveBeenCalledTimes(2);
    expect(addBulk.mock.calls[1]![0].map((j) => j.opts?.jobId)).toEqual([
      'next-c',
      'next-d',
      'next-e',
    ]);
    expect(await inspect.getWaitingCount()).toBe(5);
  });

  it('a bulk Redis refuses fails each job, and every submitter in it gets back what it took', async () => {
    // A Redis user that may connect and read but not run scripts: BullMQ's add is a script.
    const admin = new Redis(redisUrl);
    const user = `imagine-test-${randomBytes(4).toString('hex')}`;
    await admin.call('ACL', 'SETUSER', user, 'on', '>pw', '~*', '&*', '+@all', '-@scripting');
    cleanups.push(async () => {
      await admin.call('ACL', 'DELUSER', user);
      await admin.quit();
    });
    const url = new URL(redisUrl);
    url.username = user;
    url.password = 'pw';
    const { producer, inspect } = queues(url.toString());
    const backend = redisBackend();
    cleanups.push(() => backend.cleanup());
    const policy = await backend.make({ imagesPerUser: 10, concurrentPerUser: 5 });
    const sent: Job[] = [];
    const submit = submitterFor(policy, sent, {
      queue: { send: (job) => producer.send(job) },
    });
    const addBulk = vi.spyOn(Queue.prototype, 'addBulk');
    const add = vi.spyOn(Queue.prototype, 'add');
    const origin = ctx().origin;
    const outcomes = await Promise.allSettled(
      [1, 2, 3].map((count) => submit({ request: { prompt: 'a fox', count }, origin })),
    );
    // One bulk when the three admissions answer in one turn (a loaded machine may split them,
    // and a job left alone is a plain add): every job went through a refused add.
    expect(addBulk.mock.calls.flatMap(([jobs]) => jobs).length + add.mock.calls.length).toBe(3);
    for (const outcome of outcomes) {
      expect(outcome.status).toBe('rejected');
      expect(((outcome as PromiseRejectedResult).reason as ImagineError).code).toBe(
        'QUEUE_UNAVAILABLE',
      );
    }
    expect(await inspect.getWaitingCount()).toBe(0);
    const quota = await policy.quota(origin);
    expect(quota.user.used).toBe(0);
    expect(quota.scope.used).toBe(0);
    expect(quota.concurrent.inProgress).toBe(0);
  });
});
