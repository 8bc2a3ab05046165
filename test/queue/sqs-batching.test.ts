import { CreateQueueCommand, ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImagineError } from '../../contracts/errors.ts';
import { type Job, PROMPT_MAX_CHARS } from '../../contracts/job.ts';
import { type EmbeddedSqs, startEmbeddedSqs } from '../../queue/embedded-sqs.ts';
import { createSqsClient, SqsJobQueue } from '../../queue/sqs.ts';
import { webJob } from '../helpers/jobs.ts';

const job = (prompt?: string): Job => webJob(prompt);

/** Every SQS call the client makes, by command name (read from the real client's middleware). */
function recordCommands(client: SQSClient): string[] {
  const names: string[] = [];
  client.middlewareStack.add(
    (next, context) => (args) => {
      names.push(String(context.commandName));
      return next(args);
    },
    { step: 'initialize' },
  );
  return names;
}

async function drain(client: SQSClient, queueUrl: string, expected: number) {
  const got: Array<{ body: string; jobId: string | undefined }> = [];
  for (let i = 0; i < 20 && got.length < expected; i++) {
    const out = await client.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 1,
        MessageAttributeNames: ['All'],
      }),
    );
    for (const m of out.Messages ?? [])
      got.push({ body: m.Body ?? '', jobId: m.MessageAttributes?.jobId?.StringValue });
  }
  return got;
}

describe('SQS sends share SendMessageBatch calls (fauxqs)', () => {
  let sqs: EmbeddedSqs;
  let client: SQSClient;
  beforeAll(async () => {
    sqs = await startEmbeddedSqs({
      region: 'us-east-1',
      maxReceiveCount: 3,
      visibilityTimeoutSeconds: 30,
    });
    client = createSqsClient({
      region: sqs.region,
      endpoint: sqs.endpoint,
      credentials: sqs.credentials,
    });
  });
  afterAll(async () => {
    client?.destroy();
    await sqs?.stop();
  });

  const freshQueue = async (name: string, attributes: Record<string, string> = {}) =>
    (await client.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes })))
      .QueueUrl!;

  it('25 concurrent sends are 3 batch calls (10 + 10 + 5); every job arrives once, intact', async () => {
    const queueUrl = await freshQueue('batching-concurrent');
    const sender = createSqsClient({
      region: sqs.region,
      endpoint: sqs.endpoint,
      credentials: sqs.credentials,
    });
    const calls = recordCommands(sender);
    const queue = new SqsJobQueue(sender, queueUrl);
    const jobs = Array.from({ length: 25 }, (_, i) => job(`prompt ${i} — ünïcode 🦊`));
    await Promise.all(jobs.map((j) => queue.send(j)));
    expect(calls).toEqual(Array(3).fill('SendMessageBatchCommand'));

    const got = await drain(client, queueUrl, jobs.length);
    expect(got).toHaveLength(jobs.length);
    const byId = new Map(got.map((g) => [g.jobId, JSON.parse(g.body) as Job]));
    for (const j of jobs) expect(byId.get(j.jobId)).toEqual(j);
    sender.destroy();
  });

  it('a lone send is one SendMessage, not held for company', async () => {
    const queueUrl = await freshQueue('batching-lone');
    const sender = createSqsClient({
      region: sqs.region,
      endpoint: sqs.endpoint,
      credentials: sqs.credentials,
    });
    const calls = recordCommands(sender);
    const queue = new SqsJobQueue(sender, queueUrl);
    const lone = job();
    await queue.send(lone);
    expect(calls).toEqual(['SendMessageCommand']);
    const got = await drain(client, queueUrl, 1);
    expect(got.map((g) => g.jobId)).toEqual([lone.jobId]);
    sender.destroy();
  });

  it('under load, sends made soon after a call wait for company: two sends of different turns share one batch', async () => {
    const queueUrl = await freshQueue('batching-spacing');
    const sender = createSqsClient({
      region: sqs.region,
      endpoint: sqs.endpoint,
      credentials: sqs.credentials,
    });
    const calls = recordCommands(sender);
    // Long enough that the later sends come well within it, however slow the machine.
    const queue = new SqsJobQueue(sender, queueUrl, { callSpacingMs: 2000 });
    const jobs = ['first', 'second', 'third', 'fourth'].map((p) => job(p));
    // Load: a call that carried two jobs.
    await Promise.all([queue.send(jobs[0]!), queue.send(jobs[1]!)]);
    expect(calls).toEqual(['SendMessageBatchCommand']);
    const held = queue.send(jobs[2]!);
    // A later event-loop turn: without the spacing, the third send would have gone alone.
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    expect(calls).toEqual(['SendMessageBatchCommand']);
    await Promise.all([held, queue.send(jobs[3]!)]);
    expect(calls).toEqual(['SendMessageBatchCommand', 'SendMessageBatchCommand']);
    const got = await drain(client, queueUrl, jobs.length);
    expect(got.map((g) => g.jobId).sort()).toEqual(jobs.map((j) => j.jobId).sort());
    sender.destroy();
  });

  it('one job after another (no load) is never held: each goes in its own turn, alone', async () => {
    const queueUrl = await freshQueue('batching-sequential');
    const sender = createSqsClient({
      region: sqs.region,
      endpoint: sqs.endpoint,
      credentials: sqs.credentials,
    });
    const calls = recordCommands(sender);
    const queue = new SqsJobQueue(sender, queueUrl, { callSpacingMs: 2000 });
    const [first, second, third] = [job('first'), job('second'), job('third')];
    await queue.send(first);
    const next = queue.send(second);
    // Held, the second send would wait for the third (made two turns later) and share its call.
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    await Promise.all([next, queue.send(third)]);
    expect(calls).toEqual(['SendMessageCommand', 'SendMessageCommand', 'SendMessageCommand']);
    sender.destroy();
  });

  it('an entry SQS refuses fails only its own send; the rest of the batch is queued', async () => {
    // The smallest MaximumMessageSize SQS allows: a job with a long prompt is over it.
    const queueUrl = await freshQueue('batching-entry-failure', { MaximumMessageSize: '1024' });
    const queue = new SqsJobQueue(client, queueUrl);
    const small = [job('first'), job('second'), job('third')];
    const big = job('x'.repeat(PROMPT_MAX_CHARS));
    const outcomes = await Promise.allSettled([
      queue.send(small[0]!),
      queue.send(big),
      queue.send(small[1]!),
      queue.send(small[2]!),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual([
      'fulfilled',
      'rejected',
      'fulfilled',
      'fulfilled',
    ]);
    const err = (outcomes[1] as PromiseRejectedResult).reason;
    expect(err).toBeInstanceOf(ImagineError);
    expect((err as ImagineError).code).toBe('QUEUE_UNAVAILABLE');
    expect(((err as ImagineError).cause as Error).name).toBe('InvalidParameterValue');

    const got = await drain(client, queueUrl, small.length);
    expect(got.map((g) => g.jobId).sort()).toEqual(small.map((j) => j.jobId).sort());
  });

  it('a batch call that fails as a whole fails each of its sends with QUEUE_UNAVAILABLE', async () => {
    const queue = new SqsJobQueue(client, `${sqs.endpoint}/000000000000/no-such-queue`);
    const outcomes = await Promise.allSettled([queue.send(job()), queue.send(job())]);
    for (const o of outcomes) {
      expect(o.status).toBe('rejected');
      expect(((o as PromiseRejectedResult).reason as ImagineError).code).toBe('QUEUE_UNAVAILABLE');
    }
  });
});
