import {
  GetQueueAttributesCommand,
  type ReceiveMessageCommandOutput,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Job } from '../../contracts/job.ts';
import { SqsJobQueue } from '../../queue/sqs.ts';
import { type FakeGeneratorEndpoint, startFakeGenerator } from '../fakes/generator-endpoint.ts';
import { enqueueJob } from '../helpers/enqueue.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { followJob } from '../helpers/ws.ts';

/**
 * SQS delivers at least once, and a finished job's message whose delete was lost comes back
 * (to this worker or another one). The job must not run again, and its user must not hear of it.
 */
describe('a job delivered again after it ended', () => {
  let fake: FakeGeneratorEndpoint;
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  /** Job bodies the relay sent to the queue, and those the worker received from it. */
  const sent: string[] = [];
  const received: string[] = [];

  beforeAll(async () => {
    fake = await startFakeGenerator();
    app = await startTestImagine(fake.env());
    // The SQS clients the relay sends with and the worker receives with (its first long poll is
    // already under way, so only later receives are seen).
    const watch = (c: SQSClient) =>
      c.middlewareStack.add(
        (next, context) => async (args) => {
          const input = args.input as {
            MessageBody?: string;
            Entries?: Array<{ MessageBody?: string }>;
          };
          if (context.commandName === 'SendMessageCommand') sent.push(input.MessageBody ?? '');
          if (context.commandName === 'SendMessageBatchCommand')
            for (const e of input.Entries ?? []) sent.push(e.MessageBody ?? '');
          const result = await next(args);
          if (context.commandName === 'ReceiveMessageCommand')
            for (const m of (result.output as ReceiveMessageCommandOutput).Messages ?? [])
              received.push(m.Body ?? '');
          return result;
        },
        { step: 'initialize' },
      );
    const { client, receiveClient } = app.sqs!;
    for (const c of new Set([client, receiveClient])) watch(c);
  });
  afterAll(async () => {
    await app?.stop();
    await fake?.close();
  });

  const inQueue = async (client: SQSClient, queueUrl: string) => {
    const out = await client.send(
      new GetQueueAttributesCommand({
        QueueUrl: queueUrl,
        AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
      }),
    );
    return (
      Number(out.Attributes?.ApproximateNumberOfMessages) +
      Number(out.Attributes?.ApproximateNumberOfMessagesNotVisible)
    );
  };

  it('is skipped: the generator is not called again, the user sees one image and one end', async () => {
    const job = await enqueueJob(app.url, 'only once, please');
    const first = await followJob(job.ws);
    expect(first.binaries).toHaveLength(1);
    expect(fake.started('only once, please')).toBe(1);

    // The same job on the queue again, as a message whose delete was lost (a new message to SQS,
    // so nothing the consumer remembers of the first one applies).
    const body = sent.find((b) => (JSON.parse(b) as Job).jobId === job.jobId)!;
    const { client, queueUrl } = app.sqs!;
    await new SqsJobQueue(client, queueUrl).send(JSON.parse(body) as Job);
    await vi.waitFor(
      async () => {
        expect(received).toContain(body);
        expect(await inQueue(client, queueUrl)).toBe(0);
      },
      { timeout: 10_000, interval: 100 },
    );

    expect(fake.started('only once, please')).toBe(1);
    const again = await followJob(job.ws);
    expect(again.binaries).toHaveLength(1);
    expect(again.texts.filter((t) => t.state === 'done')).toHaveLength(1);
    const res = await fetch(`${app.url}/jobs/${job.jobId}`);
    expect(((await res.json()) as { state: string }).state).toBe('done');
  });
});
