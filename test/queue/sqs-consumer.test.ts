import {
  type BatchResultErrorEntry,
  CreateQueueCommand,
  type DeleteMessageBatchCommandInput,
  type DeleteMessageBatchCommandOutput,
  GetQueueAttributesCommand,
  type ReceiveMessageCommandOutput,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Job } from '../../contracts/job.ts';
import { type EmbeddedSqs, startEmbeddedSqs } from '../../queue/embedded-sqs.ts';
import { createSqsClient, SqsJobConsumer, SqsJobQueue } from '../../queue/sqs.ts';
import { webJob } from '../helpers/jobs.ts';

const job = (prompt: string): Job => webJob(prompt);

type Next = (args: { input: unknown }) => Promise<{ output: unknown }>;
type Wrap = (command: string, input: unknown, next: () => Promise<{ output: unknown }>) => unknown;

/**
 * Look at (or change) every call the real client makes, by command name: the request as the
 * consumer built it, and SQS's answer to it.
 */
function intercept(client: SQSClient, wrap: Wrap): void {
  client.middlewareStack.add(
    (next, context) => (args) =>
      wrap(String(context.commandName), args.input, () =>
        (next as unknown as Next)(args),
      ) as ReturnType<typeof next>,
    { step: 'initialize' },
  );
}

describe('the SQS consumer (fauxqs)', () => {
  let sqs: EmbeddedSqs;
  let admin: SQSClient;
  const clients: SQSClient[] = [];
  const newClient = () => {
    const c = createSqsClient({
      region: sqs.region,
      endpoint: sqs.endpoint,
      credentials: sqs.credentials,
    });
    clients.push(c);
    return c;
  };
  beforeAll(async () => {
    sqs = await startEmbeddedSqs({
      region: 'us-east-1',
      maxReceiveCount: 5,
      visibilityTimeoutSeconds: 30,
    });
    admin = newClient();
  });
  afterAll(async () => {
    for (const c of clients) c.destroy();
    await sqs?.stop();
  });

  const freshQueue = async (name: string, visibility = 30) =>
    (
      await admin.send(
        new CreateQueueCommand({
          QueueName: name,
          Attributes: { VisibilityTimeout: String(visibility) },
        }),
      )
    ).QueueUrl!;

  /** Messages waiting and messages received but not deleted. */
  const counts = async (queueUrl: string) => {
    const out = await admin.send(
      new GetQueueAttributesCommand({
        QueueUrl: queueUrl,
        AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
      }),
    );
    return [
      Number(out.Attributes?.ApproximateNumberOfMessages),
      Number(out.Attributes?.ApproximateNumberOfMessagesNotVisible),
    ];
  };

  const consumerOn = (client: SQSClient, queueUrl: string, extra: object = {}) =>
    new SqsJobConsumer({
      client,
      queueUrl,
      concurrency: 3,
      visibilityTimeoutSeconds: 30,
      waitTimeSeconds: 1,
      logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
      ...extra,
    });

  it('asks each ReceiveMessage for the free slots only: one receive serves several jobs, never more than the concurrency run', async () => {
    const queueUrl = await freshQueue('consumer-free-slots');
    const jobs = Array.from({ length: 12 }, (_, i) => job(`slot ${i}`));
    await Promise.all(jobs.map((j) => new SqsJobQueue(admin, queueUrl).send(j)));

    const client = newClient();
    let running = 0;
    let most = 0;
    const ran: string[] = [];
    const receives: Array<{ asked: number; free: number; got: number }> = [];
    const calls: string[] = [];
    intercept(client, async (command, input, next) => {
      calls.push(command);
      if (command !== 'ReceiveMessageCommand') return next();
      const asked = (input as { MaxNumberOfMessages: number }).MaxNumberOfMessages;
      const free = 3 - running;
      const result = await next();
      const got = (result.output as ReceiveMessageCommandOutput).Messages?.length ?? 0;
      receives.push({ asked, free, got });
      return result;
    });
    const consumer = consumerOn(client, queueUrl);
    consumer.start(async (j) => {
      running++;
      most = Math.max(most, running);
      ran.push(j.prompt);
      // Jobs of different lengths, so slots come free one or two at a time.
      await new Promise((r) => setTimeout(r, 30 + (ran.length % 3) * 40));
      running--;
    });
    try {
      await vi.waitFor(async () => expect(await counts(queueUrl)).toEqual([0, 0]), {
        timeout: 15_000,
        interval: 100,
      });
    } finally {
      await consumer.stop();
    }
    expect(ran.sort()).toEqual(jobs.map((j) => j.prompt).sort());
    expect(most).toBe(3);
    for (const r of receives) {
      expect(r.asked).toBe(r.free);
      expect(r.got).toBeLessThanOrEqual(r.asked);
    }
    // The first receive found 3 slots free and 12 jobs waiting: it took 3 at once.
    expect(receives[0]).toEqual({ asked: 3, free: 3, got: 3 });
    const withJobs = receives.filter((r) => r.got > 0);
    expect(withJobs.length).toBeLessThan(jobs.length);
    // Finished jobs were deleted together, never one DeleteMessage each.
    expect(calls).not.toContain('DeleteMessageCommand');
    expect(calls.filter((c) => c === 'DeleteMessageBatchCommand').length).toBeLessThan(jobs.length);
  });

  it('with prefetch, one receive takes the free slots and as many more: they start as slots come free, never more than the concurrency at once', async () => {
    const queueUrl = await freshQueue('consumer-prefetch');
    const jobs = Array.from({ length: 12 }, (_, i) => job(`ahead ${i}`));
    await Promise.all(jobs.map((j) => new SqsJobQueue(admin, queueUrl).send(j)));
    const client = newClient();
    let running = 0;
    let most = 0;
    const ran: string[] = [];
    const receives: Array<{ asked: number; free: number; got: number }> = [];
    intercept(client, async (command, input, next) => {
      if (command !== 'ReceiveMessageCommand') return next();
      const asked = (input as { MaxNumberOfMessages: number }).MaxNumberOfMessages;
      const free = 2 - running;
      const result = await next();
      const got = (result.output as ReceiveMessageCommandOutput).Messages?.length ?? 0;
      receives.push({ asked, free, got });
      return result;
    });
    const consumer = consumerOn(client, queueUrl, { concurrency: 2, prefetch: 2 });
    consumer.start(async (j) => {
      running++;
      most = Math.max(most, running);
      ran.push(j.prompt);
      await new Promise((r) => setTimeout(r, 20 + (ran.length % 3) * 20));
      running--;
    });
    try {
      await vi.waitFor(async () => expect(await counts(queueUrl)).toEqual([0, 0]), {
        timeout: 15_000,
        interval: 100,
      });
    } finally {
      await consumer.stop();
    }
    // Each job ran once, at most two at a time.
    expect(ran.sort()).toEqual(jobs.map((j) => j.prompt).sort());
    expect(most).toBe(2);
    // Every receive asked for the free slots plus the prefetch, and got no more.
    for (const r of receives) {
      expect(r.asked).toBe(r.free + 2);
      expect(r.got).toBeLessThanOrEqual(r.asked);
    }
    expect(receives[0]).toEqual({ asked: 4, free: 2, got: 4 });
    // Slots came free one at a time, yet receives served several jobs each (without prefetch,
    // each such receive asks for one).
    expect(receives.filter((r) => r.got > 0).length).toBeLessThanOrEqual(jobs.length / 2);
  });

  it('keeps messages taken ahead invisible while they wait (heartbeat), and hands them back on stop', async () => {
    // A 1 s visibility window: the job taken ahead waits longer than that for its slot.
    const queueUrl = await freshQueue('consumer-prefetch-visibility', 1);
    const jobs = [job('first'), job('second'), job('third')];
    for (const j of jobs) await new SqsJobQueue(admin, queueUrl).send(j);
    const client = newClient();
    const ran: string[] = [];
    const consumer = consumerOn(client, queueUrl, {
      concurrency: 1,
      prefetch: 2,
      visibilityTimeoutSeconds: 1,
      retryDelaySeconds: 0,
      drainMs: 100,
    });
    let release: () => void = () => {};
    consumer.start(async (j, ctx) => {
      ran.push(j.prompt);
      if (ran.length < 3) await new Promise((r) => setTimeout(r, 700));
      // Runs until stop's drain gives up on it and aborts it (then it is handed back).
      else
        await new Promise<void>((resolve, reject) => {
          release = resolve;
          ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason));
        });
    });
    // Another consumer of the same queue sees nothing while those three are held here.
    const other = newClient();
    const rival = consumerOn(other, queueUrl, { concurrency: 3 });
    const stolen: string[] = [];
    rival.start(async (j) => {
      stolen.push(j.prompt);
    });
    try {
      await vi.waitFor(() => expect(ran).toHaveLength(3), { timeout: 10_000, interval: 50 });
      expect(stolen).toEqual([]);
      expect(ran).toEqual(['first', 'second', 'third']);
    } finally {
      await rival.stop();
    }
    // The rival's last long poll, cut short here, may still wait at the queue for its second.
    await new Promise((r) => setTimeout(r, 1100));
    // Two more, taken ahead of the one now running; stop hands both back unstarted.
    const later = [job('fourth'), job('fifth')];
    // One SendMessageBatch, so the long poll waiting meanwhile finds both at once.
    const sender = new SqsJobQueue(admin, queueUrl);
    await Promise.all(later.map((j) => sender.send(j)));
    await vi.waitFor(async () => expect(await counts(queueUrl)).toEqual([0, 3]), {
      timeout: 5_000,
      interval: 50,
    });
    await consumer.stop();
    release();
    expect(ran).toEqual(['first', 'second', 'third']);
    // The running job was handed back by the drain's abort, the two waiting ones by stop.
    expect(await counts(queueUrl)).toEqual([3, 0]);
  });

  it('retries a DeleteMessageBatch entry SQS failed (a 200 with Failed entries), and a call that failed as a whole', async () => {
    const queueUrl = await freshQueue('consumer-delete-retry');
    const jobs = Array.from({ length: 4 }, (_, i) => job(`delete ${i}`));
    await Promise.all(jobs.map((j) => new SqsJobQueue(admin, queueUrl).send(j)));

    const client = newClient();
    const deletes: string[][] = [];
    let batchCalls = 0;
    intercept(client, async (command, input, next) => {
      if (command !== 'DeleteMessageBatchCommand') return next();
      const request = input as DeleteMessageBatchCommandInput;
      deletes.push((request.Entries ?? []).map((e) => e.ReceiptHandle!));
      batchCalls++;
      // The first call: SQS keeps the first entry back and reports it failed on its side, as
      // AWS's batch answers may (HTTP 200, entry in Failed, SenderFault false).
      if (batchCalls === 1) {
        const [kept, ...rest] = request.Entries!;
        request.Entries = rest;
        const result =
          rest.length > 0
            ? await next()
            : { output: { $metadata: {}, Successful: [], Failed: [] } };
        const out = result.output as DeleteMessageBatchCommandOutput;
        const failure: BatchResultErrorEntry = {
          Id: kept!.Id!,
          SenderFault: false,
          Code: 'InternalError',
          Message: 'injected: try again',
        };
        out.Failed = [...(out.Failed ?? []), failure];
        return result;
      }
      // The second call fails as a whole (after the SDK's own retries).
      if (batchCalls === 2)
        throw Object.assign(new Error('injected: service unavailable'), {
          name: 'ServiceUnavailable',
        });
      return next();
    });
    const ran: string[] = [];
    const consumer = consumerOn(client, queueUrl, { concurrency: 4 });
    consumer.start(async (j) => {
      ran.push(j.prompt);
    });
    try {
      // Visibility is 30 s: had any delete been dropped, its message would still be in flight.
      await vi.waitFor(async () => expect(await counts(queueUrl)).toEqual([0, 0]), {
        timeout: 15_000,
        interval: 100,
      });
    } finally {
      await consumer.stop();
    }
    expect(ran.sort()).toEqual(jobs.map((j) => j.prompt).sort());
    expect(batchCalls).toBeGreaterThanOrEqual(3);
    // The entry failed in the first call was sent again.
    const firstFailed = deletes[0]![0]!;
    expect(deletes.slice(1).some((d) => d.includes(firstFailed))).toBe(true);
  });

  it('a message whose delete was given up comes back and is deleted without running its job again', async () => {
    const queueUrl = await freshQueue('consumer-delete-given-up', 1);
    const lone = job('deleted at last');
    await new SqsJobQueue(admin, queueUrl).send(lone);

    const client = newClient();
    let deleteCalls = 0;
    const receiveCounts: string[] = [];
    intercept(client, async (command, input, next) => {
      if (command === 'ReceiveMessageCommand') {
        const result = await next();
        for (const m of (result.output as ReceiveMessageCommandOutput).Messages ?? [])
          receiveCounts.push(m.Attributes?.ApproximateReceiveCount ?? '?');
        return result;
      }
      if (command !== 'DeleteMessageBatchCommand') return next();
      deleteCalls++;
      // The first two calls (all the attempts allowed) fail on SQS's side.
      if (deleteCalls <= 2) {
        const entries = (input as DeleteMessageBatchCommandInput).Entries ?? [];
        return {
          output: {
            Successful: [],
            Failed: entries.map((e) => ({ Id: e.Id, SenderFault: false, Code: 'InternalError' })),
          },
        };
      }
      return next();
    });
    const ran: string[] = [];
    const consumer = consumerOn(client, queueUrl, {
      visibilityTimeoutSeconds: 1,
      deleteAttempts: 2,
    });
    consumer.start(async (j) => {
      ran.push(j.jobId);
    });
    try {
      await vi.waitFor(
        async () => {
          expect(receiveCounts).toEqual(['1', '2']);
          expect(await counts(queueUrl)).toEqual([0, 0]);
        },
        { timeout: 15_000, interval: 100 },
      );
    } finally {
      await consumer.stop();
    }
    // Received twice, run once.
    expect(ran).toEqual([lone.jobId]);
    expect(deleteCalls).toBe(3);
  });

  it('an unsigned client (the embedded emulator’s) sends no signature and is served the same', async () => {
    const queueUrl = await freshQueue('consumer-unsigned');
    const headers: Array<Record<string, string>> = [];
    const clientOf = (unsigned: boolean) => {
      const c = createSqsClient({
        region: sqs.region,
        endpoint: sqs.endpoint,
        credentials: sqs.credentials,
        unsigned,
      });
      clients.push(c);
      // After signing: the request as it goes on the wire.
      c.middlewareStack.add(
        (next) => (args) => {
          headers.push({ ...(args.request as { headers: Record<string, string> }).headers });
          return next(args);
        },
        { step: 'deserialize' },
      );
      return c;
    };
    const unsigned = clientOf(true);
    const sent = job('no signature needed');
    await new SqsJobQueue(unsigned, queueUrl).send(sent);
    const ran: string[] = [];
    const consumer = consumerOn(unsigned, queueUrl);
    consumer.start(async (j) => {
      ran.push(j.jobId);
    });
    try {
      await vi.waitFor(async () => expect(await counts(queueUrl)).toEqual([0, 0]), {
        timeout: 10_000,
        interval: 100,
      });
    } finally {
      await consumer.stop();
    }
    expect(ran).toEqual([sent.jobId]);
    expect(headers.length).toBeGreaterThanOrEqual(3);
    for (const h of headers) {
      expect(h.authorization).toBeUndefined();
      expect(h['x-amz-target']).toMatch(/^AmazonSQS\./);
    }
    // A default client signs (AWS needs it).
    headers.length = 0;
    await new SqsJobQueue(clientOf(false), queueUrl).send(job('signed'));
    expect(headers[0]?.authorization).toMatch(/^AWS4-HMAC-SHA256 /);
  });

  it('stop sends finished jobs’ deletes at once and leaves nothing in flight', async () => {
    const queueUrl = await freshQueue('consumer-stop-flush');
    await new SqsJobQueue(admin, queueUrl).send(job('last one'));
    const client = newClient();
    let done = false;
    // A linger far longer than the test: only stop's flush can delete the message in time.
    const consumer = consumerOn(client, queueUrl, { deleteLingerMs: 60_000 });
    consumer.start(async () => {
      done = true;
    });
    await vi.waitFor(() => expect(done).toBe(true), { timeout: 10_000 });
    expect(await counts(queueUrl)).toEqual([0, 1]);
    await consumer.stop();
    expect(await counts(queueUrl)).toEqual([0, 0]);
  });

  it('with a receive client, long polls go there and the other calls keep the main client’s cached middleware; stop still cuts the long poll short', async () => {
    const queueUrl = await freshQueue('consumer-receive-client');
    const cachedClient = createSqsClient({
      region: sqs.region,
      endpoint: sqs.endpoint,
      credentials: sqs.credentials,
      unsigned: true,
      cacheMiddleware: true,
    });
    clients.push(cachedClient);
    // A middleware's factory runs each time the SDK resolves a command's stack: once per command
    // class with the cache, once per call without it.
    const resolved: Record<string, number> = {};
    const onMain: string[] = [];
    cachedClient.middlewareStack.add(
      (next, context) => {
        const name = String(context.commandName);
        resolved[name] = (resolved[name] ?? 0) + 1;
        return (args) => {
          onMain.push(name);
          return next(args);
        };
      },
      { step: 'initialize' },
    );
    const receiveClient = newClient();
    const onReceive: string[] = [];
    const receiveErrors: string[] = [];
    intercept(receiveClient, async (command, _input, next) => {
      onReceive.push(command);
      try {
        return await next();
      } catch (err) {
        receiveErrors.push((err as Error).name);
        throw err;
      }
    });
    const jobs = Array.from({ length: 9 }, (_, i) => job(`split ${i}`));
    const ran: string[] = [];
    const consumer = consumerOn(cachedClient, queueUrl, {
      receiveClient,
      concurrency: 2,
      // A long poll that only stop can end in time.
      waitTimeSeconds: 20,
      deleteLingerMs: 5,
    });
    consumer.start(async (j) => {
      ran.push(j.prompt);
      await new Promise((r) => setTimeout(r, 10));
    });
    try {
      // Sent in three rounds, so that deletes and receives interleave.
      for (let round = 0; round < 3; round++) {
        await Promise.all(
          jobs.slice(round * 3, round * 3 + 3).map((j) => new SqsJobQueue(admin, queueUrl).send(j)),
        );
        await vi.waitFor(async () => expect(await counts(queueUrl)).toEqual([0, 0]), {
          timeout: 10_000,
          interval: 50,
        });
      }
    } finally {
      await consumer.stop();
    }
    expect(ran.sort()).toEqual(jobs.map((j) => j.prompt).sort());
    expect(new Set(onReceive)).toEqual(new Set(['ReceiveMessageCommand']));
    expect(onMain).not.toContain('ReceiveMessageCommand');
    expect(onMain.filter((c) => c === 'DeleteMessageBatchCommand').length).toBeGreaterThan(1);
    // Several deletes, one resolution: nothing dropped the cache between them.
    expect(resolved.DeleteMessageBatchCommand).toBe(1);
    // The last long poll (20 s, on an empty queue) was cut short by stop's abort.
    expect(receiveErrors).toEqual(['AbortError']);
  });
});
