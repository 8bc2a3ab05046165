/**
 * The progress push (issue 11): a `generating` push with `progress` (and a `preview` part) is
 * recorded without a state change; malformed or hostile ones are coded 4xx, never a 500.
 */
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PushMeta } from '../../contracts/push.ts';
import { signPushHeaders } from '../../contracts/push.ts';
import { encodePush } from '../../worker/push-client.ts';
import { enqueueJob } from '../helpers/enqueue.ts';
import { pngOf } from '../helpers/images.ts';
import { startTestImagine, TEST_SECRET } from '../helpers/imagine.ts';
import { openWaiter } from '../helpers/ws.ts';

describe('progress pushes', () => {
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  beforeAll(async () => {
    app = await startTestImagine(
      { LIMIT_CONCURRENT_PER_USER: '1000', LIMIT_IMAGES_PER_USER: '100000' },
      { role: 'relay' },
    );
  });
  afterAll(async () => {
    await app?.stop();
  });

  const push = (meta: Record<string, unknown>, preview?: Buffer, images?: Buffer[]) => {
    const { body, contentType } = encodePush(meta as PushMeta, images, preview);
    return fetch(`${app.url}/push`, {
      method: 'POST',
      headers: {
        'content-type': contentType,
        ...signPushHeaders(TEST_SECRET, String(meta.jobId), body),
      },
      body: body as Uint8Array<ArrayBuffer>,
    });
  };
  const jpeg = (side: number) =>
    sharp({ create: { width: side, height: side, channels: 3, background: '#336699' } })
      .jpeg()
      .toBuffer();

  it('is recorded without a state change and reaches the waiter with its preview', async () => {
    const job = await enqueueJob(app.url, 'a fox in progress');
    expect((await push({ jobId: job.jobId, status: 'generating' })).status).toBe(200);
    const waiter = await openWaiter(job.ws);
    const preview = await jpeg(16);
    const res = await push(
      {
        jobId: job.jobId,
        status: 'generating',
        progress: { step: 2, steps: 4 },
        preview: { contentType: 'image/jpeg', width: 16, height: 16 },
      },
      preview,
    );
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ state: 'generating', duplicate: false });
    const png = await pngOf(64, 64);
    await push({ jobId: job.jobId, status: 'done', contentType: 'image/png' }, undefined, [png]);
    const seen = await waiter.closed;
    expect(seen.texts.map((t) => [t.type, t.state ?? null, t.progress ?? null])).toEqual([
      ['status', 'generating', null],
      ['status', 'generating', 0.5],
      ['preview', null, null],
      ['status', 'done', null],
      ['image', null, null],
    ]);
    expect(seen.texts[2]).toMatchObject({
      contentType: 'image/jpeg',
      bytes: preview.length,
      width: 16,
    });
    expect(seen.previews).toHaveLength(1);
    expect(seen.previews[0]!.equals(preview)).toBe(true);
    expect(seen.binaries).toHaveLength(1);
    expect(seen.binaries[0]!.equals(png)).toBe(true);
  });

  it('a late waiter sees the latest progress and preview at once', async () => {
    const job = await enqueueJob(app.url, 'a fox halfway');
    await push({ jobId: job.jobId, status: 'generating' });
    const preview = await jpeg(8);
    await push(
      {
        jobId: job.jobId,
        status: 'generating',
        progress: { step: 3, steps: 4 },
        preview: { contentType: 'image/jpeg' },
      },
      preview,
    );
    const waiter = await openWaiter(job.ws);
    await new Promise((r) => setTimeout(r, 100));
    expect(waiter.frames.texts[0]).toMatchObject({ state: 'generating', progress: 0.75, step: 3 });
    expect(waiter.frames.texts[1]).toMatchObject({ type: 'preview' });
    expect(waiter.frames.previews[0]!.equals(preview)).toBe(true);
    waiter.socket.close();
  });

  it.each<[string, Record<string, unknown>, 'jpeg' | 'png' | 'big' | 'none', number, string]>([
    ['step past steps', { progress: { step: 5, steps: 4 } }, 'none', 400, 'INVALID_PUSH'],
    ['zero steps', { progress: { step: 0, steps: 0 } }, 'none', 400, 'INVALID_PUSH'],
    ['a fractional step', { progress: { step: 1.5, steps: 4 } }, 'none', 400, 'INVALID_PUSH'],
    [
      'an unknown progress field',
      { progress: { step: 1, steps: 4, eta: 3 } },
      'none',
      400,
      'INVALID_PUSH',
    ],
    [
      'a preview part without meta.preview',
      { progress: { step: 1, steps: 4 } },
      'jpeg',
      400,
      'INVALID_PUSH',
    ],
    [
      'meta.preview without a part',
      { progress: { step: 1, steps: 4 }, preview: { contentType: 'image/jpeg' } },
      'none',
      400,
      'INVALID_PUSH',
    ],
    [
      'a preview that is not what it says',
      { progress: { step: 1, steps: 4 }, preview: { contentType: 'image/jpeg' } },
      'png',
      400,
      'INVALID_PUSH',
    ],
    [
      'a preview over 64 KiB',
      { progress: { step: 1, steps: 4 }, preview: { contentType: 'image/jpeg' } },
      'big',
      413,
      'PAYLOAD_TOO_LARGE',
    ],
    [
      'a preview without progress',
      { preview: { contentType: 'image/jpeg' } },
      'jpeg',
      400,
      'INVALID_PUSH',
    ],
  ])('%s is refused with a coded 4xx', async (_name, extra, part, status, code) => {
    const job = await enqueueJob(app.url, 'a fox with bad progress');
    await push({ jobId: job.jobId, status: 'generating' });
    const bytes =
      part === 'jpeg'
        ? await jpeg(8)
        : part === 'png'
          ? await pngOf(8, 8)
          : part === 'big'
            ? Buffer.concat([await jpeg(8), Buffer.alloc(70 * 1024)])
            : undefined;
    const res = await push({ jobId: job.jobId, status: 'generating', ...extra }, bytes);
    expect(res.status).toBe(status);
    expect(await res.json()).toMatchObject({ error: { code } });
  });

  it('progress on a done push is refused', async () => {
    const job = await enqueueJob(app.url, 'a fox done with progress');
    const res = await push(
      {
        jobId: job.jobId,
        status: 'done',
        contentType: 'image/png',
        progress: { step: 1, steps: 1 },
      },
      undefined,
      [await pngOf(8, 8)],
    );
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { code: 'INVALID_PUSH' } });
  });

  it('a generating push for a cancelled job is answered 409 JOB_CANCELLED; a done push is a duplicate', async () => {
    const job = await enqueueJob(app.url, 'a fox cancelled');
    expect((await fetch(`${app.url}/jobs/${job.jobId}`, { method: 'DELETE' })).status).toBe(200);
    const start = await push({ jobId: job.jobId, status: 'generating' });
    expect(start.status).toBe(409);
    expect(await start.json()).toMatchObject({ error: { code: 'JOB_CANCELLED' } });
    const done = await push(
      { jobId: job.jobId, status: 'done', contentType: 'image/png' },
      undefined,
      [await pngOf(8, 8)],
    );
    expect(done.status).toBe(200);
    expect(await done.json()).toMatchObject({ duplicate: true, state: 'cancelled' });
  });
});
