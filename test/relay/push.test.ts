import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formBody } from '../helpers/enqueue.ts';
import { noisePng, pngOf } from '../helpers/images.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { sendPush, sendRawPush, testJobId } from '../helpers/push.ts';
import { followJob } from '../helpers/ws.ts';

describe('POST /push (signed worker → relay intake)', () => {
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  let png: Buffer;
  beforeAll(async () => {
    // Relay only: no worker competes with the pushes under test.
    app = await startTestImagine({ PUSH_MAX_BYTES: '4096' }, { role: 'relay' });
    png = await pngOf(16, 16);
  });
  afterAll(async () => {
    await app?.stop();
  });

  const code = async (res: Response) =>
    ((await res.json()) as { error: { code: string } }).error.code;

  it('accepts a signed multipart image push and serves it to polling and late WebSocket clients', async () => {
    const jobId = testJobId();
    const res = await sendPush(
      app.url,
      { jobId, status: 'done', contentType: 'image/png', seed: 7 },
      png,
    );
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ ok: true, duplicate: false, state: 'done' });
    const state = (await (await fetch(`${app.url}/jobs/${jobId}`)).json()) as Record<
      string,
      unknown
    >;
    expect(state).toMatchObject({
      state: 'done',
      seed: 7,
      contentType: 'image/png',
      bytes: png.length,
    });
    const image = await fetch(`${app.url}/jobs/${jobId}/image`);
    expect(image.headers.get('content-type')).toBe('image/png');
    expect(Buffer.from(await image.arrayBuffer()).equals(png)).toBe(true);
    const late = await followJob(`${app.url.replace('http', 'ws')}/ws?jobId=${jobId}`);
    expect(late.binaries).toHaveLength(1);
    expect(late.binaries[0]!.equals(png)).toBe(true);
  });

  it('acknowledges a duplicate push without delivering twice', async () => {
    const jobId = testJobId();
    await sendPush(app.url, { jobId, status: 'done', contentType: 'image/png', seed: 1 }, png);
    const other = await pngOf(16, 16, { r: 0, g: 0, b: 255 });
    const dup = await sendPush(
      app.url,
      { jobId, status: 'done', contentType: 'image/png', seed: 2 },
      other,
    );
    expect(dup.status).toBe(200);
    expect(await dup.json()).toMatchObject({ duplicate: true });
    const image = Buffer.from(await (await fetch(`${app.url}/jobs/${jobId}/image`)).arrayBuffer());
    expect(image.equals(png)).toBe(true);
    const metrics = await (await fetch(`${app.url}/metrics`)).text();
    expect(metrics).toMatch(/imagine_pushes_total\{kind="duplicate"\} [1-9]/);
  });

  it('accepts the seed’s JSON/base64 push shape', async () => {
    const jobId = testJobId();
    const body = Buffer.from(JSON.stringify({ job_id: jobId, image: png.toString('base64') }));
    const res = await sendRawPush(app.url, body, 'application/json');
    expect(res.status).toBe(200);
    const image = Buffer.from(await (await fetch(`${app.url}/jobs/${jobId}/image`)).arrayBuffer());
    expect((await sharp(image).metadata()).width).toBe(16);
  });

  it.each([
    ['missing', { 'x-imagine-signature': '', 'x-imagine-timestamp': '' }, 'MISSING_SIGNATURE'],
    ['wrong', { 'x-imagine-signature': `v1=${'0'.repeat(64)}` }, 'BAD_SIGNATURE'],
    ['garbled', { 'x-imagine-signature': 'sha256=abc' }, 'BAD_SIGNATURE'],
  ])('rejects a %s signature with 401', async (_name, headers, expected) => {
    const res = await sendPush(app.url, { jobId: testJobId(), status: 'generating' }, undefined, {
      headers,
    });
    expect(res.status).toBe(401);
    expect(await code(res)).toBe(expected);
  });

  it('rejects a signature made with another secret', async () => {
    const res = await sendPush(app.url, { jobId: testJobId(), status: 'generating' }, undefined, {
      secret: 'another-secret-another-secret-another-secret',
    });
    expect(res.status).toBe(401);
    expect(await code(res)).toBe('BAD_SIGNATURE');
  });

  it.each([
    ['stale', -301],
    ['future', 301],
  ])('rejects a %s timestamp with 401', async (_name, skew) => {
    const res = await sendPush(app.url, { jobId: testJobId(), status: 'generating' }, undefined, {
      nowSeconds: Math.floor(Date.now() / 1000) + skew,
    });
    expect(res.status).toBe(401);
    expect(await code(res)).toBe('STALE_SIGNATURE');
  });

  it('rejects a body tampered with after signing', async () => {
    const jobId = testJobId();
    const { encodePush } = await import('../../worker/push-client.ts');
    const { signPush } = await import('../../contracts/push.ts');
    const { TEST_SECRET } = await import('../helpers/imagine.ts');
    const { body, contentType } = encodePush(
      { jobId, status: 'done', contentType: 'image/png' },
      png,
    );
    const sig = signPush(TEST_SECRET, body);
    const tampered = Buffer.from(body);
    tampered[tampered.length - 40] = (tampered[tampered.length - 40]! + 1) % 256;
    const res = await fetch(`${app.url}/push`, {
      method: 'POST',
      headers: {
        'content-type': contentType,
        'x-imagine-timestamp': sig.timestamp,
        'x-imagine-signature': sig.signature,
      },
      body: tampered,
    });
    expect(res.status).toBe(401);
    expect((await fetch(`${app.url}/jobs/${jobId}`)).status).toBe(404);
  });

  it.each<[string, () => Promise<Response>, number, string]>([
    [
      'multipart without meta',
      async () => {
        const form = new FormData();
        form.set('image', new Blob([new Uint8Array(8)]), 'x.png');
        const { body, contentType } = await formBody(form);
        return sendRawPush(app.url, body, contentType);
      },
      400,
      'INVALID_PUSH',
    ],
    [
      'meta that is not JSON',
      async () => {
        const form = new FormData();
        form.set('meta', '{nope');
        const { body, contentType } = await formBody(form);
        return sendRawPush(app.url, body, contentType);
      },
      400,
      'INVALID_PUSH',
    ],
    [
      'meta with a malformed job id',
      () => sendPush(app.url, { jobId: 'short', status: 'generating' }),
      400,
      'INVALID_PUSH',
    ],
    [
      'meta with an unknown status',
      () => sendPush(app.url, { jobId: testJobId(), status: 'exploded' }),
      400,
      'INVALID_PUSH',
    ],
    [
      'done without an image',
      () => sendPush(app.url, { jobId: testJobId(), status: 'done' }),
      400,
      'INVALID_PUSH',
    ],
    [
      'an image that is not an image',
      () =>
        sendPush(
          app.url,
          { jobId: testJobId(), status: 'done', contentType: 'image/png' },
          Buffer.from('hello, not a png'),
        ),
      400,
      'INVALID_PUSH',
    ],
    [
      'a content type that lies',
      async () =>
        sendPush(app.url, { jobId: testJobId(), status: 'done', contentType: 'image/jpeg' }, png),
      400,
      'INVALID_PUSH',
    ],
    [
      'a status push carrying an image',
      () => sendPush(app.url, { jobId: testJobId(), status: 'generating' }, png),
      400,
      'INVALID_PUSH',
    ],
    [
      'an image over the size limit',
      async () =>
        sendPush(
          app.url,
          { jobId: testJobId(), status: 'done', contentType: 'image/png' },
          await pngOf(200, 200, { r: 1, g: 2, b: 3 }).then((b) =>
            Buffer.concat([b, Buffer.alloc(5000)]),
          ),
        ),
      413,
      'PAYLOAD_TOO_LARGE',
    ],
    [
      'a body far over the limit',
      () => sendRawPush(app.url, Buffer.alloc(200_000, 1), 'multipart/form-data; boundary=x'),
      413,
      'PAYLOAD_TOO_LARGE',
    ],
    [
      'the wrong content type',
      () => sendRawPush(app.url, Buffer.from('hi'), 'text/plain'),
      415,
      'UNSUPPORTED_MEDIA_TYPE',
    ],
    [
      'legacy JSON that is not JSON',
      () => sendRawPush(app.url, Buffer.from('{oops'), 'application/json'),
      400,
      'INVALID_JSON',
    ],
    [
      'legacy JSON without a job id',
      () => sendRawPush(app.url, Buffer.from('{"image":"aGk="}'), 'application/json'),
      400,
      'INVALID_PUSH',
    ],
    [
      'broken multipart framing',
      () => sendRawPush(app.url, Buffer.from('--x\r\ngarbage'), 'multipart/form-data; boundary=x'),
      400,
      'INVALID_PUSH',
    ],
  ])('answers %s with a coded 4xx', async (_name, send, status, expected) => {
    const res = await send();
    expect(res.status).toBe(status);
    expect(await code(res)).toBe(expected);
  });

  it('still answers after all that abuse', async () => {
    expect((await fetch(`${app.url}/healthz`)).status).toBe(200);
  });
});

describe('large images arrive intact', () => {
  it('four 3 MiB pushes at once reach WebSocket and polling clients byte for byte', async () => {
    const app = await startTestImagine({}, { role: 'relay' });
    try {
      // ~3 MiB each: noise barely compresses.
      const images = await Promise.all(Array.from({ length: 4 }, () => noisePng(1024, 1024)));
      const jobs = await Promise.all(
        images.map(async () => {
          const res = await fetch(`${app.url}/enqueue`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ prompt: 'big' }),
          });
          return (await res.json()) as { jobId: string; ws: string };
        }),
      );
      const waiting = jobs.map((j) => followJob(j.ws));
      await new Promise((r) => setTimeout(r, 200));
      const pushes = await Promise.all(
        jobs.map((j, i) =>
          sendPush(
            app.url,
            { jobId: j.jobId, status: 'done', contentType: 'image/png' },
            images[i],
          ),
        ),
      );
      for (const p of pushes) expect(p.status).toBe(200);
      const frames = await Promise.all(waiting);
      for (const [i, got] of frames.entries()) {
        expect(got.binaries).toHaveLength(1);
        expect(got.binaries[0]!.equals(images[i]!)).toBe(true);
        const polled = Buffer.from(
          await (await fetch(`${app.url}/jobs/${jobs[i]!.jobId}/image`)).arrayBuffer(),
        );
        expect(polled.equals(images[i]!)).toBe(true);
      }
    } finally {
      await app.stop();
    }
  });
});
