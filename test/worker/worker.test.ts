import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FakeGeneratorEndpoint, startFakeGenerator } from '../fakes/generator-endpoint.ts';
import { enqueueJob } from '../helpers/enqueue.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { followJob } from '../helpers/ws.ts';

const enqueue = (url: string, prompt: string) => enqueueJob(url, prompt);

describe('worker', () => {
  let fake: FakeGeneratorEndpoint;
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  beforeAll(async () => {
    fake = await startFakeGenerator();
    app = await startTestImagine({
      GENERATOR: 'http',
      MODAL_FLUX_URL: fake.url,
      MODAL_KEY: fake.key,
      MODAL_SECRET: fake.secret,
      WORKER_CONCURRENCY: '3',
      SQS_VISIBILITY_TIMEOUT: '5',
      LIMIT_CONCURRENT_PER_USER: '20',
    });
  });
  afterAll(async () => {
    await app?.stop();
    await fake?.close();
  });

  it('runs WORKER_CONCURRENCY jobs at once, and no more', async () => {
    fake.delayMs = 600;
    fake.maxInFlight = 0;
    const jobs = await Promise.all(
      Array.from({ length: 5 }, (_, i) => enqueue(app.url, `parallel ${i}`)),
    );
    const results = await Promise.all(jobs.map((j) => followJob(j.ws)));
    for (const r of results) expect(r.binaries).toHaveLength(1);
    expect(fake.maxInFlight).toBe(3);
  });

  it('keeps a long job invisible on the queue while it runs (no second delivery)', async () => {
    fake.delayMs = 7000; // longer than the 5 s visibility timeout
    const before = fake.requests.length;
    const job = await enqueue(app.url, 'a slow masterpiece');
    const got = await followJob(job.ws, 20_000);
    expect(got.binaries).toHaveLength(1);
    // Wait past another visibility window: a redelivery would call the generator again.
    await new Promise((r) => setTimeout(r, 1500));
    expect(
      fake.requests.slice(before).filter((r) => r.body.prompt === 'a slow masterpiece'),
    ).toHaveLength(1);
  }, 30_000);
});
