import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type EmbeddedSqs, startEmbeddedSqs } from '../../queue/embedded-sqs.ts';
import { type FakeGeneratorEndpoint, startFakeGenerator } from '../fakes/generator-endpoint.ts';
import { enqueueJob } from '../helpers/enqueue.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { followJob } from '../helpers/ws.ts';

const enqueue = (url: string, prompt: string) => enqueueJob(url, prompt);

describe('worker shutdown loses no job', () => {
  let fake: FakeGeneratorEndpoint;
  const generatorEnv = () => fake.env();
  const started = (prompt: string) => fake.started(prompt);

  beforeAll(async () => {
    fake = await startFakeGenerator();
  });
  afterAll(async () => {
    await fake?.close();
  });

  it('lets a running job finish and deliver before the process stops', async () => {
    fake.delayMs = 1500;
    const app = await startTestImagine({ ...generatorEnv(), WORKER_DRAIN_SECONDS: '20' });
    const job = await enqueue(app.url, 'finish me first');
    const watching = followJob(job.ws, 20_000);
    await vi.waitFor(() => expect(started('finish me first')).toBe(1), { timeout: 10_000 });
    await app.stop();
    const got = await watching;
    expect(got.binaries).toHaveLength(1);
  });

  describe('with a shared queue', () => {
    let sqs: EmbeddedSqs;
    const saved = { ...process.env };
    beforeAll(async () => {
      sqs = await startEmbeddedSqs({
        region: 'us-east-1',
        maxReceiveCount: 5,
        visibilityTimeoutSeconds: 30,
      });
      process.env.AWS_ACCESS_KEY_ID = sqs.credentials.accessKeyId;
      process.env.AWS_SECRET_ACCESS_KEY = sqs.credentials.secretAccessKey;
    });
    afterAll(async () => {
      process.env = saved;
      await sqs?.stop();
    });

    it('hands a job cut short by shutdown back to the queue, and the next worker finishes it', async () => {
      const queueEnv = {
        SQS_QUEUE_URL: sqs.queueUrl,
        SQS_ENDPOINT: sqs.endpoint,
        SQS_DLQ_URL: sqs.deadLetterUrl,
      };
      fake.delayMs = 5000;
      const first = await startTestImagine({
        ...generatorEnv(),
        ...queueEnv,
        WORKER_DRAIN_SECONDS: '0',
      });
      const { jobId } = await enqueue(first.url, 'survive a restart');
      await vi.waitFor(() => expect(started('survive a restart')).toBe(1), { timeout: 10_000 });
      await first.stop();

      fake.delayMs = 0;
      const second = await startTestImagine({ ...generatorEnv(), ...queueEnv });
      try {
        await vi.waitFor(
          async () => {
            const res = await fetch(`${second.url}/jobs/${jobId}`);
            expect(((await res.json()) as { state?: string }).state).toBe('done');
          },
          { timeout: 20_000, interval: 250 },
        );
        expect(started('survive a restart')).toBe(2);
      } finally {
        await second.stop();
      }
    }, 40_000);
  });
});
