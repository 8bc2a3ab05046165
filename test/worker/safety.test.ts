/**
 * Output safety end to end: the worker judges every image with the real classifier before it
 * pushes; flagged paths are driven by a threshold that flags everything or by a generator that
 * returns its own high score, never by a stubbed classifier.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { asModeration } from '../../moderation/index.ts';
import { createNsfwClassifier } from '../../worker/safety/classifier.ts';
import { type FakeGeneratorEndpoint, startFakeGenerator } from '../fakes/generator-endpoint.ts';
import { enqueueJob } from '../helpers/enqueue.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { followJob } from '../helpers/ws.ts';

// One real classifier for the whole file: the model loads once.
const classifier = createNsfwClassifier();
type Imagine = Awaited<ReturnType<typeof startTestImagine>>;
let running: Imagine | undefined;
afterEach(async () => {
  await running?.stop();
  running = undefined;
});

async function start(env: Record<string, string>): Promise<Imagine> {
  running = await startTestImagine(env, { classifier });
  return running;
}

async function safetyCount(url: string, action: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text
    .split('\n')
    .find((l) => l.startsWith(`imagine_safety_decisions_total{action="${action}",platform="web"}`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

async function auditOf(app: Imagine): Promise<string[]> {
  const moderation = asModeration(app.relay?.relay.admission);
  if (!moderation) throw new Error('no moderation policy');
  return (await moderation.store.audit('web:web', 50)).map((e) => `${e.actorId} ${e.action}`);
}

describe('output safety in the worker (demo generator, real classifier)', () => {
  it('a demo image scores safe and is delivered, counted as deliver', async () => {
    const app = await start({ SAFETY: 'block' });
    const job = await enqueueJob(app.url, 'a fox in space', { width: 256, height: 256 });
    const seen = await followJob(job.ws);
    expect(seen.texts.at(-2)).toMatchObject({ type: 'status', state: 'done' });
    expect(seen.texts.at(-1)).toMatchObject({ type: 'image' });
    expect(seen.texts.at(-1)).not.toHaveProperty('spoiler');
    expect(seen.binaries).toHaveLength(1);
    expect(await safetyCount(app.url, 'deliver')).toBe(1);
    expect(await auditOf(app)).toEqual([]);
    expect(classifier.loaded).toBe(true);
  });

  it('block with a threshold that flags everything: nothing delivered, the user told why', async () => {
    const app = await start({ SAFETY: 'block', SAFETY_THRESHOLD: '0' });
    const prompt = 'a quiet harbour at noon';
    const job = await enqueueJob(app.url, prompt, { width: 256, height: 256 });
    const seen = await followJob(job.ws);
    expect(seen.binaries).toHaveLength(0);
    const last = seen.texts.at(-1)!;
    expect(last).toMatchObject({ state: 'failed', error: { code: 'SAFETY_BLOCKED' } });
    expect(String((last.error as { message: string }).message)).toContain(
      "this site's safety setting blocked the image",
    );
    expect((await fetch(`${app.url}/jobs/${job.jobId}/image`)).ok).toBe(false);
    expect(await safetyCount(app.url, 'block')).toBe(1);
    // The audit log says who and which job, never the prompt or the image.
    const audit = await auditOf(app);
    expect(audit).toHaveLength(1);
    expect(audit[0]).toContain(`safety block: image 1 of job ${job.jobId}`);
    expect(audit[0]).toContain('nsfwjs/mobilenet_v2@wasm');
    expect(audit[0]).not.toContain(prompt);
  });

  it('spoiler: the image is delivered marked as a spoiler', async () => {
    const app = await start({ SAFETY: 'spoiler', SAFETY_THRESHOLD: '0' });
    const job = await enqueueJob(app.url, 'a red bicycle', { width: 128, height: 128 });
    const seen = await followJob(job.ws);
    expect(seen.texts.at(-1)).toMatchObject({ type: 'image', spoiler: true });
    expect(seen.binaries).toHaveLength(1);
    expect(await safetyCount(app.url, 'spoiler')).toBe(1);
    expect((await auditOf(app))[0]).toContain(`safety spoiler: image 1 of job ${job.jobId}`);
  });

  it('review on the web page (no moderators channel) withholds the image rather than show it', async () => {
    const app = await start({ SAFETY: 'review', SAFETY_THRESHOLD: '0' });
    const job = await enqueueJob(app.url, 'a red bicycle', { width: 128, height: 128 });
    const seen = await followJob(job.ws);
    expect(seen.binaries).toHaveLength(0);
    expect(seen.texts.at(-1)).toMatchObject({ state: 'failed', error: { code: 'SAFETY_BLOCKED' } });
  });

  it('safety off: the model is never loaded', async () => {
    const fresh = createNsfwClassifier();
    running = await startTestImagine({ SAFETY: 'off' }, { classifier: fresh });
    const job = await enqueueJob(running.url, 'a fox in space');
    const seen = await followJob(job.ws);
    expect(seen.binaries).toHaveLength(1);
    expect(fresh.loaded).toBe(false);
    expect(await safetyCount(running.url, 'deliver')).toBe(1);
  });
});

describe('a generator that returns its own safety score', () => {
  let fake: FakeGeneratorEndpoint;
  beforeAll(async () => {
    fake = await startFakeGenerator();
  });
  afterAll(async () => {
    await fake.close();
  });

  it('its high score wins over the classifier’s low one: blocked', async () => {
    fake.mode = 'ok';
    fake.safetyScore = '0.97';
    const app = await start({ ...fake.env(), SAFETY: 'block' });
    const job = await enqueueJob(app.url, 'a plain square');
    const seen = await followJob(job.ws);
    expect(seen.binaries).toHaveLength(0);
    expect(seen.texts.at(-1)).toMatchObject({ state: 'failed', error: { code: 'SAFETY_BLOCKED' } });
    expect((await auditOf(app))[0]).toContain('generator 0.97');
  });

  it('a low score of its own does not hide the image', async () => {
    fake.mode = 'ok';
    fake.safetyScore = '0.01';
    const app = await start({ ...fake.env(), SAFETY: 'block' });
    const seen = await followJob((await enqueueJob(app.url, 'a plain square')).ws);
    expect(seen.binaries).toHaveLength(1);
  });

  it('an unreadable score is a bad response, not a guess', async () => {
    fake.mode = 'ok';
    fake.safetyScore = 'very safe';
    const app = await start({ ...fake.env(), SAFETY: 'block' });
    const seen = await followJob((await enqueueJob(app.url, 'a plain square')).ws);
    expect(seen.texts.at(-1)).toMatchObject({
      state: 'failed',
      error: { code: 'GENERATOR_BAD_RESPONSE' },
    });
  });

  it('an image the classifier cannot decode is not delivered: SAFETY_CHECK_FAILED', async () => {
    fake.mode = 'corrupt';
    fake.safetyScore = undefined;
    const app = await start({ ...fake.env(), SAFETY: 'spoiler' });
    const seen = await followJob((await enqueueJob(app.url, 'a broken file')).ws);
    expect(seen.binaries).toHaveLength(0);
    expect(seen.texts.at(-1)).toMatchObject({
      state: 'failed',
      error: { code: 'SAFETY_CHECK_FAILED' },
    });
  });
});
