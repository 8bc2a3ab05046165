import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PushImage, signPushHeaders } from '../../contracts/push.ts';
import { createRelayPusher, encodePush } from '../../worker/push-client.ts';
import { pngOf } from '../helpers/images.ts';
import { startTestImagine, TEST_SECRET } from '../helpers/imagine.ts';
import { sendPush, testJobId } from '../helpers/push.ts';
import { followJob } from '../helpers/ws.ts';

describe('POST /push with N images: intake, buffer, WebSocket frames, /jobs/:id/image?i=', () => {
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  let pngs: Buffer[];
  const described = (seed: number): PushImage[] =>
    [0, 1, 2, 3].map((i) => ({
      contentType: 'image/png',
      seed: seed + i,
      width: 16 + i,
      height: 16,
    }));
  beforeAll(async () => {
    app = await startTestImagine({ PUSH_MAX_BYTES: '4096' }, { role: 'relay' });
    pngs = await Promise.all([0, 1, 2, 3].map((i) => pngOf(16 + i, 16, { r: 60 * i, g: 9, b: 9 })));
  });
  afterAll(async () => {
    await app?.stop();
  });
  const code = async (res: Response) =>
    ((await res.json()) as { error: { code: string; message: string } }).error;

  it('keeps the four images in order and serves each: WS image+binary per image, ?i=, /jobs lists them', async () => {
    const jobId = testJobId();
    const res = await sendPush(
      app.url,
      { jobId, status: 'done', task: 'generate', count: 4, seed: 40, images: described(40) },
      pngs,
    );
    expect(res.status).toBe(200);
    const ws = await followJob(`${app.url.replace('http', 'ws')}/ws?jobId=${jobId}`);
    expect(ws.binaries.map((b, i) => b.equals(pngs[i]!))).toEqual([true, true, true, true]);
    const frames = ws.texts.filter((t) => t.type === 'image');
    expect(frames.map((f) => [f.index, f.count, f.seed, f.width])).toEqual([
      [0, 4, 40, 16],
      [1, 4, 41, 17],
      [2, 4, 42, 18],
      [3, 4, 43, 19],
    ]);
    for (const i of [0, 1, 2, 3]) {
      const one = await fetch(`${app.url}/jobs/${jobId}/image?i=${i}`);
      expect(one.headers.get('content-disposition')).toContain(`imagine-${40 + i}.png`);
      expect(Buffer.from(await one.arrayBuffer()).equals(pngs[i]!)).toBe(true);
    }
    const first = await fetch(`${app.url}/jobs/${jobId}/image`);
    expect(Buffer.from(await first.arrayBuffer()).equals(pngs[0]!)).toBe(true);
    const state = (await (await fetch(`${app.url}/jobs/${jobId}`)).json()) as {
      count: number;
      images: Array<{ seed: number; url: string; bytes: number }>;
    };
    expect(state.count).toBe(4);
    expect(state.images.map((i) => [i.seed, i.url, i.bytes])).toEqual(
      pngs.map((p, i) => [40 + i, `/jobs/${jobId}/image?i=${i}`, p.length]),
    );
  });

  it('answers a bad image index with 400 and one past the count with 404', async () => {
    const jobId = testJobId();
    await sendPush(
      app.url,
      { jobId, status: 'done', seed: 1, images: described(1).slice(0, 2) },
      pngs.slice(0, 2),
    );
    for (const bad of ['x', '-1', '1.5', '10', '']) {
      const res = await fetch(`${app.url}/jobs/${jobId}/image?i=${bad}`);
      expect(res.status).toBe(400);
      expect((await code(res)).code).toBe('BAD_REQUEST');
    }
    const past = await fetch(`${app.url}/jobs/${jobId}/image?i=2`);
    expect(past.status).toBe(404);
    expect((await code(past)).message).toMatch(/made 2 images/);
  });

  it.each<[string, Record<string, unknown>, () => Buffer[], number, RegExp]>([
    [
      'fewer parts than meta.images lists',
      { images: described(1) },
      () => pngs.slice(0, 3),
      400,
      /lists 4 images but the body has 3/,
    ],
    ['two parts and no meta.images', {}, () => pngs.slice(0, 2), 400, /need meta.images/],
    [
      'five image parts',
      { images: described(1) },
      () => [...pngs, pngs[0]!],
      400,
      /at most 4 images/,
    ],
    [
      'a part that is not an image',
      { images: described(1) },
      () => [pngs[0]!, Buffer.from('GIF89a not allowed here'), pngs[2]!, pngs[3]!],
      400,
      /image 2 is not PNG, JPEG or WebP/,
    ],
    [
      'a part that is a PNG header followed by garbage',
      { images: described(1) },
      () => [
        pngs[0]!,
        pngs[1]!,
        Buffer.concat([pngs[2]!.subarray(0, 33), Buffer.alloc(64, 7)]),
        pngs[3]!,
      ],
      400,
      /image 3: image is damaged/,
    ],
    [
      'a part whose type differs from what meta says',
      { images: described(1).map((d, i) => (i === 3 ? { ...d, contentType: 'image/webp' } : d)) },
      () => pngs,
      400,
      /meta says image\/webp but image 4 is image\/png/,
    ],
    [
      'a part over PUSH_MAX_BYTES',
      { images: described(1) },
      () => [pngs[0]!, Buffer.concat([pngs[1]!, Buffer.alloc(5000)]), pngs[2]!, pngs[3]!],
      413,
      /limit/,
    ],
  ])('refuses %s, creating nothing', async (_name, extra, parts, status, message) => {
    const jobId = testJobId();
    const res = await sendPush(app.url, { jobId, status: 'done', seed: 1, ...extra }, parts());
    expect(res.status).toBe(status);
    expect((await code(res)).message).toMatch(message);
    expect((await fetch(`${app.url}/jobs/${jobId}`)).status).toBe(404);
  });

  it('takes a four-image push signed v2 by the worker’s client, every part covered', async () => {
    const jobId = testJobId();
    const pusher = createRelayPusher({ relayUrl: app.url, secret: TEST_SECRET, attempts: 1 });
    await pusher.push({ jobId, status: 'done', seed: 7, count: 4, images: described(7) }, pngs);
    for (const i of [0, 1, 2, 3]) {
      const one = await fetch(`${app.url}/jobs/${jobId}/image?i=${i}`);
      expect(Buffer.from(await one.arrayBuffer()).equals(pngs[i]!)).toBe(true);
    }
  });

  it('refuses a v2 push whose last image part was changed after signing, creating nothing', async () => {
    const jobId = testJobId();
    const meta = { jobId, status: 'done' as const, seed: 7, count: 4, images: described(7) };
    const { body, contentType } = encodePush(meta, pngs);
    const signed = signPushHeaders(TEST_SECRET, jobId, body);
    // Same length, one byte of image 4 flipped: only the hash of the whole body can tell.
    const at = body.lastIndexOf(pngs[3]!) + 20;
    const tampered = Buffer.from(body);
    tampered[at] = tampered[at]! ^ 0xff;
    const res = await fetch(`${app.url}/push`, {
      method: 'POST',
      headers: { 'content-type': contentType, ...signed },
      body: tampered as Uint8Array<ArrayBuffer>,
    });
    expect(res.status).toBe(401);
    expect((await code(res)).code).toBe('BAD_SIGNATURE');
    expect((await fetch(`${app.url}/jobs/${jobId}`)).status).toBe(404);
  });
});
