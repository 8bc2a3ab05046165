import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ImagineError } from '../../contracts/errors.ts';
import type { PushMeta } from '../../contracts/push.ts';
import { createInProcessPusher } from '../../runtime/in-process-pusher.ts';
import { createRelayPusher, type RelayPusher } from '../../worker/push-client.ts';
import { enqueueJob } from '../helpers/enqueue.ts';
import { failure } from '../helpers/generator.ts';
import { pngOf } from '../helpers/images.ts';
import { startTestImagine, TEST_SECRET } from '../helpers/imagine.ts';
import { testJobId } from '../helpers/push.ts';
import { followJob, openWaiter } from '../helpers/ws.ts';

/** What the relay itself said in an HTTP refusal the push client carries. */
function relayRefusal(err: ImagineError): { code: string; message: string } {
  const body = err.message.replace(/^relay answered HTTP \d+: /, '');
  return (JSON.parse(body) as { error: { code: string; message: string } }).error;
}

describe('in-process pusher: the relay in this process checks and decides as for HTTP pushes', () => {
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  let inProcess: RelayPusher;
  let http: RelayPusher;
  let png: Buffer;
  beforeAll(async () => {
    // A relay only (no worker takes the jobs), so every push here is the test's.
    app = await startTestImagine({ PUSH_MAX_BYTES: '4096' }, { role: 'relay' });
    inProcess = createInProcessPusher(app.relay!, { attempts: 2 });
    http = createRelayPusher({ relayUrl: app.url, secret: TEST_SECRET, attempts: 1 });
    png = await pngOf(16, 16, { r: 200, g: 10, b: 10 });
  });
  afterAll(async () => {
    await app?.stop();
  });
  const stateOf = async (jobId: string) => {
    const res = await fetch(`${app.url}/jobs/${jobId}`);
    return res.status === 404 ? 'unknown' : ((await res.json()) as { state: string }).state;
  };

  it.each<[string, (jobId: string) => Parameters<RelayPusher['push']>]>([
    ['bytes that are no image', (jobId) => [{ jobId, status: 'done' }, Buffer.from('not a png')]],
    [
      'a PNG cut short (magic bytes, no structure)',
      (jobId) => [{ jobId, status: 'done' }, png.subarray(0, png.length - 20)],
    ],
    [
      'an image over PUSH_MAX_BYTES',
      (jobId) => [{ jobId, status: 'done' }, Buffer.concat([png, Buffer.alloc(5000)])],
    ],
    [
      'meta naming another type than the image',
      (jobId) => [{ jobId, status: 'done', contentType: 'image/jpeg' }, png],
    ],
    ['a "done" push without an image', (jobId) => [{ jobId, status: 'done' }]],
    ['a "failed" push carrying an image', (jobId) => [{ jobId, status: 'failed' }, png]],
    [
      'meta.images listing more images than sent',
      (jobId) => [
        {
          jobId,
          status: 'done',
          images: [
            { contentType: 'image/png', seed: 1, width: 16, height: 16 },
            { contentType: 'image/png', seed: 2, width: 16, height: 16 },
          ],
        },
        [png],
      ],
    ],
    [
      'a meta the schema refuses (a negative seed)',
      (jobId) => [{ jobId, status: 'done', seed: -1 } as PushMeta, png],
    ],
    [
      'a preview on a "done" push',
      (jobId) => [
        { jobId, status: 'done', preview: { contentType: 'image/png' } },
        undefined,
        { preview: png },
      ],
    ],
  ])('refuses %s with the error the HTTP push gets, and nothing changes', async (_what, make) => {
    const viaHttp = testJobId();
    const here = testJobId();
    const overHttp = relayRefusal(await failure(http.push(...make(viaHttp))));
    const [meta, images, opts] = make(here);
    const refused = await failure(inProcess.push({ ...meta, jobId: here }, images, opts));
    expect(refused.code).toBe(overHttp.code);
    expect(refused.message).toBe(overHttp.message);
    // Refused before anything was recorded: no job half-created either way.
    expect(await stateOf(here)).toBe('unknown');
    expect(await stateOf(viaHttp)).toBe('unknown');
  });

  it('delivers a pushed image to the WebSocket and /jobs/:id/image, and a second push is a duplicate', async () => {
    const { jobId, ws } = await enqueueJob(app.url, 'in process');
    const waiter = await openWaiter(ws);
    expect(await inProcess.push({ jobId, status: 'generating' })).toEqual({ duplicate: false });
    const done: PushMeta = { jobId, status: 'done', contentType: 'image/png', seed: 5 };
    expect(await inProcess.push(done, png)).toEqual({ duplicate: false });
    const frames = await waiter.closed;
    expect(frames.binaries).toHaveLength(1);
    expect(frames.binaries[0]!.equals(png)).toBe(true);
    expect(frames.closeReason).toBe('done');
    const image = await fetch(`${app.url}/jobs/${jobId}/image`);
    expect(Buffer.from(await image.arrayBuffer()).equals(png)).toBe(true);
    // The same push again, in process or over HTTP: a duplicate, the job still done.
    expect(await inProcess.push(done, png)).toEqual({ duplicate: true });
    expect(await http.push(done, png)).toEqual({ duplicate: true });
    expect(await inProcess.push({ jobId, status: 'generating' })).toEqual({ duplicate: true });
    expect(await stateOf(jobId)).toBe('done');
  });

  it('a cancel while the job runs: the next push learns it, the result is a duplicate, the job ends once', async () => {
    for (const pusher of [inProcess, http]) {
      const { jobId, ws } = await enqueueJob(app.url, 'cancel race');
      await pusher.push({ jobId, status: 'generating' });
      const waiter = await openWaiter(ws);
      const cancel = await fetch(`${app.url}/jobs/${jobId}`, { method: 'DELETE' });
      expect(cancel.status).toBe(200);
      // A progress push (or a cancel poll) is refused with JOB_CANCELLED: the worker stops.
      const poll = await failure(pusher.push({ jobId, status: 'generating' }));
      expect(poll.code).toBe('JOB_CANCELLED');
      // The result that was already on its way changes nothing.
      const late = await pusher.push({ jobId, status: 'done', contentType: 'image/png' }, png);
      expect(late).toEqual({ duplicate: true });
      const frames = await waiter.closed;
      const terminal = frames.texts.filter(
        (t) =>
          t.type === 'image' ||
          (t.type === 'status' &&
            ['done', 'failed', 'cancelled', 'expired'].includes(String(t.state))),
      );
      expect(terminal).toEqual([expect.objectContaining({ type: 'status', state: 'cancelled' })]);
      expect(frames.binaries).toHaveLength(0);
      expect(await stateOf(jobId)).toBe('cancelled');
    }
  });

  it('a push cancelled before it starts changes nothing', async () => {
    const { jobId } = await enqueueJob(app.url, 'aborted');
    const aborted = AbortSignal.abort();
    await expect(
      inProcess.push({ jobId, status: 'done', contentType: 'image/png' }, png, { signal: aborted }),
    ).rejects.toThrow();
    expect(await stateOf(jobId)).toBe('queued');
  });

  it('a failure the relay would answer with a 500 is tried again, then DELIVERY_FAILED', async () => {
    const { jobId } = await enqueueJob(app.url, 'retried');
    const apply = vi.spyOn(app.relay!.relay.tracker, 'apply');
    apply.mockImplementationOnce(() => {
      throw new Error('a bug in the relay');
    });
    expect(await inProcess.push({ jobId, status: 'generating' })).toEqual({ duplicate: false });
    expect(await stateOf(jobId)).toBe('generating');
    apply.mockImplementation(() => {
      throw new Error('a bug in the relay');
    });
    const failed = await failure(
      inProcess.push({ jobId, status: 'done', contentType: 'image/png' }, png),
    );
    apply.mockRestore();
    expect(failed.code).toBe('DELIVERY_FAILED');
    expect(await stateOf(jobId)).toBe('generating');
  });
});

describe('embedded default (relay + worker in one process)', () => {
  it('hands the worker’s pushes to the relay in process: no HTTP /push, the image arrives', async () => {
    const app = await startTestImagine();
    try {
      const urls: string[] = [];
      app.relay!.server.on('request', (req: { url?: string }) => urls.push(req.url ?? ''));
      const { ws } = await enqueueJob(app.url, 'embedded');
      const frames = await followJob(ws);
      expect(frames.closeReason).toBe('done');
      expect(frames.binaries).toHaveLength(1);
      expect(urls.filter((u) => u.startsWith('/push'))).toEqual([]);
    } finally {
      await app.stop();
    }
  });
});
