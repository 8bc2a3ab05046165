import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedSqs, startEmbeddedSqs } from '../../queue/embedded-sqs.ts';
import { readRedrivePolicy } from '../../queue/sqs.ts';
import { type FakeGeneratorEndpoint, startFakeGenerator } from '../fakes/generator-endpoint.ts';
import { enqueueJob } from '../helpers/enqueue.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { followJob } from '../helpers/ws.ts';

/**
 * On AWS the queue's own redrive policy decides when a job goes to the dead-letter queue. A
 * queue made with maxReceiveCount 2 while imagine is configured with SQS_MAX_RECEIVE_COUNT=5:
 * the second failed attempt must be the one that tells the user, or the job reaches the DLQ
 * without a word.
 */
describe('the last attempt follows the queue’s redrive maxReceiveCount', () => {
  let sqs: EmbeddedSqs;
  let fake: FakeGeneratorEndpoint;
  const saved = { ...process.env };

  beforeAll(async () => {
    sqs = await startEmbeddedSqs({
      region: 'us-east-1',
      maxReceiveCount: 2,
      visibilityTimeoutSeconds: 30,
    });
    process.env.AWS_ACCESS_KEY_ID = sqs.credentials.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = sqs.credentials.secretAccessKey;
    fake = await startFakeGenerator();
  });
  afterAll(async () => {
    process.env = saved;
    await fake?.close();
    await sqs?.stop();
  });

  it('reads maxReceiveCount and the dead-letter queue from the policy', async () => {
    const { createSqsClient } = await import('../../queue/sqs.ts');
    const client = createSqsClient({
      region: sqs.region,
      endpoint: sqs.endpoint,
      credentials: sqs.credentials,
    });
    try {
      expect(await readRedrivePolicy(client, sqs.queueUrl)).toEqual({
        deadLetterUrl: sqs.deadLetterUrl,
        maxReceiveCount: 2,
      });
      // The dead-letter queue itself has no policy: nothing to read, the setting applies.
      expect(await readRedrivePolicy(client, sqs.deadLetterUrl)).toEqual({});
    } finally {
      client.destroy();
    }
  });

  it('tells the user on the queue’s last receive, not the configured one', async () => {
    fake.mode = 'unavailable'; // every attempt fails with a retryable 503
    const app = await startTestImagine({
      ...fake.env(),
      SQS_QUEUE_URL: sqs.queueUrl,
      SQS_ENDPOINT: sqs.endpoint,
      SQS_MAX_RECEIVE_COUNT: '5',
    });
    try {
      const job = await enqueueJob(app.url, 'the queue decides');
      const got = await followJob(job.ws, 30_000);
      const last = got.texts.at(-1);
      expect(last).toMatchObject({ type: 'status', state: 'failed' });
      expect((last?.error as { code?: string } | undefined)?.code).toBe('GENERATOR_UNAVAILABLE');
      expect(fake.started('the queue decides')).toBe(2);
    } finally {
      await app.stop();
    }
  }, 45_000);
});
