import { ReceiveMessageCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestImagine } from '../helpers/imagine.ts';
import { followJob } from '../helpers/ws.ts';

describe('malformed queue messages go to the dead-letter queue', () => {
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  beforeAll(async () => {
    app = await startTestImagine();
  });
  afterAll(async () => {
    await app?.stop();
  });

  it('moves non-JSON and schema-violating messages to the DLQ and keeps working', async () => {
    const { client, queueUrl, deadLetterUrl } = app.sqs!;
    expect(deadLetterUrl).toBeTruthy();
    const bad = ['this is not json', JSON.stringify({ v: 1, jobId: 'x', prompt: 5 })];
    for (const body of bad)
      await client.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: body }));

    const seen: string[] = [];
    const deadline = Date.now() + 15_000;
    while (seen.length < bad.length && Date.now() < deadline) {
      const out = await client.send(
        new ReceiveMessageCommand({
          QueueUrl: deadLetterUrl!,
          WaitTimeSeconds: 1,
          MaxNumberOfMessages: 10,
          MessageAttributeNames: ['All'],
        }),
      );
      for (const m of out.Messages ?? []) {
        seen.push(m.Body ?? '');
        expect(m.MessageAttributes?.reason?.StringValue).toBe('malformed job');
      }
    }
    expect(seen.sort()).toEqual([...bad].sort());

    // The worker is still alive and serving real jobs.
    const res = await fetch(`${app.url}/enqueue`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'still alive', width: 64, height: 64, count: 1 }),
    });
    const { ws } = (await res.json()) as { ws: string };
    const got = await followJob(ws);
    expect(got.binaries).toHaveLength(1);
  });

  it('resolves the dead-letter queue from the redrive policy when not configured', async () => {
    const { resolveDeadLetterUrl } = await import('../../queue/sqs.ts');
    const sqs = app.sqs!;
    const url = await resolveDeadLetterUrl(sqs.client, sqs.queueUrl);
    expect(url).toBe(sqs.deadLetterUrl);
  });
});
