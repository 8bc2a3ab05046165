/**
 * U2 and V3 after the whole process restarts, the web way: the client keeps its own copy of each
 * result, uploads the one it picked (POST /uploads) and the job carries the signed link; the
 * relay's buffer link works while the result is held. Bad uploads and links are clear 4xx.
 */
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { enqueueJob } from '../helpers/enqueue.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { followJob } from '../helpers/ws.ts';

async function upload(base: string, bytes: Buffer, type = 'image/png'): Promise<Response> {
  return fetch(`${base}/uploads`, {
    method: 'POST',
    headers: { 'content-type': type },
    body: bytes as Uint8Array<ArrayBuffer>,
  });
}

describe('the loop across a restart, with the client’s own copy', () => {
  const apps: Array<Awaited<ReturnType<typeof startTestImagine>>> = [];
  afterAll(async () => {
    for (const app of apps) await app.stop().catch(() => {});
  });

  it('U2 and V3 work after the process restarts; a buffered result link works before', async () => {
    const first = await startTestImagine({ UPLOAD_TTL_SECONDS: '60' });
    apps.push(first);
    const grid = await enqueueJob(first.url, 'four harbours', { width: 128, height: 96, count: 4 });
    const got = await followJob(grid.ws);
    expect(got.binaries).toHaveLength(4);
    const frames = got.texts.filter((t) => t.type === 'image');

    // While the result is in the buffer, a signed link to it is enough.
    const link = await fetch(`${first.url}/jobs/${grid.jobId}/image-link?i=3`, { method: 'POST' });
    expect(link.status).toBe(200);
    const { url: bufferUrl } = (await link.json()) as { url: string };
    const v4 = await enqueueJob(first.url, 'four harbours', {
      input: {
        image: { kind: 'url', url: bufferUrl },
        jobId: grid.jobId,
        index: 3,
        width: 128,
        height: 96,
      },
      count: 1,
    });
    expect((await followJob(v4.ws)).binaries).toHaveLength(1);

    await first.stop();
    const second = await startTestImagine({ UPLOAD_TTL_SECONDS: '60' });
    apps.push(second);
    // The old relay's buffer is gone with it:
    expect(
      (await fetch(`${second.url}/jobs/${grid.jobId}/image-link?i=1`, { method: 'POST' })).status,
    ).toBe(404);

    // U2: the client's own copy of image 2 (index 1).
    const up = await upload(second.url, got.binaries[1]!);
    expect(up.status).toBe(201);
    const uploaded = (await up.json()) as { url: string; width: number; height: number };
    expect([uploaded.width, uploaded.height]).toEqual([128, 96]);
    const u2 = await enqueueJob(second.url, 'four harbours', {
      task: 'upscale',
      input: {
        image: { kind: 'url', url: uploaded.url },
        jobId: grid.jobId,
        index: 1,
        seed: frames[1]!.seed,
        width: 128,
        height: 96,
      },
    });
    const u2got = await followJob(u2.ws);
    expect(u2got.binaries).toHaveLength(1);
    expect(await sharp(u2got.binaries[0]!).metadata()).toMatchObject({ width: 256, height: 192 });
    expect(u2got.texts.find((t) => t.type === 'image')).toMatchObject({ seed: frames[1]!.seed });

    // V3 (strong): the client's own copy of image 3.
    const v3up = (await (await upload(second.url, got.binaries[2]!)).json()) as { url: string };
    const v3 = await enqueueJob(second.url, 'four harbours', {
      input: {
        image: { kind: 'url', url: v3up.url },
        jobId: grid.jobId,
        index: 2,
        width: 128,
        height: 96,
      },
      strength: 'strong',
      count: 4,
    });
    const v3got = await followJob(v3.ws);
    expect(v3got.binaries).toHaveLength(4);
    expect(v3got.texts.find((t) => t.type === 'image')).toMatchObject({ task: 'vary', width: 128 });
  });

  it('answers bad uploads and links with a clear 4xx', async () => {
    const app = await startTestImagine({ INPUT_IMAGE_MAX_BYTES: '2048' }, { role: 'relay' });
    apps.push(app);
    const code = async (res: Response) => [
      res.status,
      ((await res.json()) as { error: { code: string } }).error.code,
    ];
    expect(await code(await upload(app.url, Buffer.from('hello'), 'text/plain'))).toEqual([
      415,
      'UNSUPPORTED_MEDIA_TYPE',
    ]);
    expect(await code(await upload(app.url, Buffer.from('GIF89a....'), 'image/png'))).toEqual([
      415,
      'INPUT_NOT_IMAGE',
    ]);
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#fff' } })
      .png()
      .toBuffer();
    expect(await code(await upload(app.url, png.subarray(0, 30)))).toEqual([
      415,
      'INPUT_NOT_IMAGE',
    ]);
    expect(await code(await upload(app.url, Buffer.alloc(5000, 1)))).toEqual([
      413,
      'PAYLOAD_TOO_LARGE',
    ]);
    expect(await code(await upload(app.url, Buffer.alloc(0)))).toEqual([400, 'BAD_REQUEST']);
    expect(await code(await fetch(`${app.url}/inputs/not-a-token`))).toEqual([
      400,
      'INPUT_NOT_ALLOWED',
    ]);
    expect(
      await code(
        await fetch(`${app.url}/jobs/${'A'.repeat(24)}/image-link?i=9`, { method: 'POST' }),
      ),
    ).toEqual([400, 'BAD_REQUEST']);
    const ok = (await (await upload(app.url, png)).json()) as { url: string };
    const served = await fetch(ok.url);
    expect(Buffer.from(await served.arrayBuffer()).equals(png)).toBe(true);
  });
});
