/**
 * Previews and output safety (issues 11 and 12): a preview is pixels nobody classified, so with
 * output safety on for the job the worker sends the step counts but no preview, and the page
 * never shows an unjudged image; with safety off the previews go out (test/worker/progress.test.ts).
 * Through the whole pipeline, the real classifier and a generator that streams previews.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createNsfwClassifier } from '../../worker/safety/classifier.ts';
import { type FakeGeneratorEndpoint, startFakeGenerator } from '../fakes/generator-endpoint.ts';
import { enqueueJob } from '../helpers/enqueue.ts';
import { startTestImagine } from '../helpers/imagine.ts';

/** The text frames of a job's WebSocket and how many binary frames came, once it closes. */
function framesOf(wsUrl: string): Promise<{ texts: Record<string, unknown>[]; binaries: number }> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(wsUrl);
    const texts: Record<string, unknown>[] = [];
    let binaries = 0;
    socket.on('message', (data, isBinary) => {
      if (isBinary) binaries += 1;
      else texts.push(JSON.parse(String(data)));
    });
    socket.on('close', () => resolve({ texts, binaries }));
    socket.on('error', reject);
  });
}

describe('previews with output safety on', () => {
  let fake: FakeGeneratorEndpoint;
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  beforeAll(async () => {
    fake = await startFakeGenerator();
    fake.streamSteps = 5;
    fake.stepMs = 80;
    fake.streamPreviews = true;
    app = await startTestImagine(
      { ...fake.env(), PROGRESS_PUSH_MS: '10', SAFETY: 'spoiler' },
      { classifier: createNsfwClassifier() },
    );
  });
  afterAll(async () => {
    await app?.stop();
    await fake?.close();
  });

  it('sends the progress but no preview, then the judged image', async () => {
    const job = await enqueueJob(app.url, 'a fox step by step', { width: 64, height: 64 });
    const { texts, binaries } = await framesOf(job.ws);
    expect(
      texts.filter((t) => t.type === 'status' && t.progress !== undefined).length,
    ).toBeGreaterThan(0);
    expect(texts.filter((t) => t.type === 'preview')).toEqual([]);
    expect(texts.filter((t) => t.type === 'image')).toHaveLength(1);
    expect(binaries).toBe(1);
  });
});
