/**
 * A relay restarted while a job is queued still knows the job (the job ledger: SQLite under
 * DATA_DIR, or Redis), so clients keep following it to its image; and a signed push replayed
 * after the restart is recognised as a duplicate, not delivered again.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { signPush } from '../../contracts/push.ts';
import { type EmbeddedSqs, startEmbeddedSqs } from '../../queue/embedded-sqs.ts';
import { encodePush } from '../../worker/push-client.ts';
import { enqueueJob } from '../helpers/enqueue.ts';
import { pngOf } from '../helpers/images.ts';
import { startTestImagine, TEST_SECRET } from '../helpers/imagine.ts';
import { sendPush, testJobId } from '../helpers/push.ts';
import { followJob } from '../helpers/ws.ts';
import { uniquePrefix } from '../moderation/helpers.ts';

// A queue outside the relay process (as AWS SQS is): it survives the relay's restart.
let sqs: EmbeddedSqs;
beforeAll(async () => {
  sqs = await startEmbeddedSqs({
    region: 'us-east-1',
    maxReceiveCount: 3,
    visibilityTimeoutSeconds: 30,
  });
  process.env.AWS_ACCESS_KEY_ID = sqs.credentials.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = sqs.credentials.secretAccessKey;
});
afterAll(async () => {
  await sqs?.stop();
});
const externalQueue = () => ({
  SQS_QUEUE_URL: sqs.queueUrl,
  SQS_ENDPOINT: sqs.endpoint,
  SQS_DLQ_URL: sqs.deadLetterUrl,
});

describe.each([
  ['SQLite under DATA_DIR', () => externalQueue()],
  [
    'Redis',
    () => ({ ...externalQueue(), REDIS_URL: inject('redisUrl'), REDIS_KEY_PREFIX: uniquePrefix() }),
  ],
])('a relay restart, with the ledger in %s', (_name, backendEnv) => {
  let dataDir: string;
  let app: Awaited<ReturnType<typeof startTestImagine>> | undefined;
  afterEach(async () => {
    await app?.stop();
    app = undefined;
    rmSync(dataDir, { recursive: true, force: true });
  });
  const start = (env: Record<string, string>) =>
    startTestImagine({ ...env, DATA_DIR: dataDir }, { role: 'relay' });

  it('keeps a queued job followable, over polling and the WebSocket, to its image', async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'imagine-restart-'));
    const env = backendEnv();
    app = await start(env);
    const job = await enqueueJob(app.url, 'outlives a restart');
    await app.stop();

    app = await start(env);
    const status = await fetch(`${app.url}/jobs/${job.jobId}`);
    expect(status.status).toBe(200);
    expect(await status.json()).toMatchObject({ state: 'queued' });
    const ws = `${app.url.replace('http', 'ws')}/ws?jobId=${job.jobId}`;
    const following = followJob(ws);
    await new Promise((r) => setTimeout(r, 200));
    const png = await pngOf(16, 16);
    const pushed = await sendPush(
      app.url,
      { jobId: job.jobId, status: 'done', contentType: 'image/png', seed: job.seed },
      png,
    );
    expect(await pushed.json()).toMatchObject({ duplicate: false, state: 'done' });
    const got = await following;
    expect(got.binaries).toHaveLength(1);
    expect(got.binaries[0]!.equals(png)).toBe(true);
  });

  it('answers a signed push replayed after a restart as a duplicate', async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'imagine-restart-'));
    const env = backendEnv();
    app = await start(env);
    const jobId = testJobId();
    const { body, contentType } = encodePush(
      { jobId, status: 'done', contentType: 'image/png', seed: 3 },
      await pngOf(16, 16),
    );
    const { timestamp, signature } = signPush(TEST_SECRET, body);
    const replay = () =>
      fetch(`${app!.url}/push`, {
        method: 'POST',
        headers: {
          'content-type': contentType,
          'x-imagine-timestamp': timestamp,
          'x-imagine-signature': signature,
        },
        body: body as Uint8Array<ArrayBuffer>,
      });
    expect(await (await replay()).json()).toMatchObject({ duplicate: false });
    await app.stop();

    app = await start(env);
    const again = await replay();
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ duplicate: true });
    // Nothing was delivered: the relay holds no image for it.
    const state = (await (await fetch(`${app.url}/jobs/${jobId}`)).json()) as { state: string };
    expect(state.state).toBe('expired');
  });
});

describe('the embedded default on shutdown', () => {
  it('tells every waiter its queued job is lost, and says so again after the restart', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'imagine-restart-'));
    try {
      let app = await startTestImagine({ DATA_DIR: dataDir }, { role: 'relay' });
      const job = await enqueueJob(app.url, 'lost with its queue');
      const following = followJob(job.ws);
      await new Promise((r) => setTimeout(r, 200));
      await app.stop();
      const got = await following;
      const last = got.texts.filter((t) => t.type === 'status').at(-1) as {
        state: string;
        error?: { code: string };
      };
      expect(last).toMatchObject({ state: 'failed', error: { code: 'QUEUE_UNAVAILABLE' } });
      expect(got.closeCode).toBe(1000);

      app = await startTestImagine({ DATA_DIR: dataDir }, { role: 'relay' });
      try {
        const status = (await (await fetch(`${app.url}/jobs/${job.jobId}`)).json()) as {
          state: string;
        };
        expect(status.state).toBe('failed');
      } finally {
        await app.stop();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
