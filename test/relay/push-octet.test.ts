/**
 * `POST /push` as `application/octet-stream`: the body is the image bytes alone (several back to
 * back, as `meta.parts` lists them), the meta travels in `X-Imagine-Meta`, and the v3 signature
 * covers it with the timestamp, job id, length and body hash, so everything but the hash is
 * checked before the body is read. Each refusal is a coded 4xx and delivers nothing.
 */
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  encodeMetaHeader,
  META_HEADER,
  type PushMeta,
  signOctetPushHeaders,
  signPushHeaders,
} from '../../contracts/push.ts';
import { createRelayPusher, encodeOctetPush, encodePush } from '../../worker/push-client.ts';
import { enqueueJob } from '../helpers/enqueue.ts';
import { noisePng, pngOf } from '../helpers/images.ts';
import { startTestImagine, TEST_SECRET } from '../helpers/imagine.ts';
import { testJobId } from '../helpers/push.ts';
import { followJob, openWaiter } from '../helpers/ws.ts';

const MAX = 64 * 1024;

/** POST an octet-stream push; `headers` override the signed ones. */
function octetPush(
  baseUrl: string,
  meta: PushMeta,
  body: Buffer,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(`${baseUrl}/push`, {
    method: 'POST',
    headers: { ...signOctetPushHeaders(TEST_SECRET, meta, body), ...headers },
    body: body as Uint8Array<ArrayBuffer>,
  });
}

const refusal = async (res: Response) =>
  ((await res.json()) as { error: { code: string; message: string } }).error;

/** Send raw bytes over a socket; resolve with the status line the relay answered. */
function rawPush(baseUrl: string, headers: Record<string, string>, body: Buffer): Promise<string> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => {
      socket.write(
        `POST /push HTTP/1.1\r\nHost: x\r\n${Object.entries(headers)
          .map(([k, v]) => `${k}: ${v}\r\n`)
          .join('')}\r\n`,
      );
      socket.write(body);
    });
    let received = '';
    socket.on('data', (d) => {
      received += d.toString('latin1');
      if (/\r\n\r\n/.test(received)) {
        resolve(received);
        socket.destroy();
      }
    });
    socket.on('close', () => resolve(received));
    socket.on('error', reject);
  });
}

describe('POST /push as application/octet-stream (v3)', () => {
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  let png: Buffer;
  let other: Buffer;
  const ws = (jobId: string) => `${app.url.replace('http', 'ws')}/ws?jobId=${jobId}`;
  const state = async (jobId: string) => (await fetch(`${app.url}/jobs/${jobId}`)).status;
  beforeAll(async () => {
    app = await startTestImagine(
      { PUSH_MAX_BYTES: String(MAX), LIMIT_CONCURRENT_PER_USER: '1000' },
      { role: 'relay' },
    );
    png = await pngOf(24, 16);
    other = await pngOf(16, 24, { r: 0, g: 0, b: 255 });
  });
  afterAll(async () => {
    await app?.stop();
  });

  it('takes the image bytes alone and delivers them to a waiting WebSocket and to polling', async () => {
    const job = await enqueueJob(app.url, 'a fox, octet-stream');
    const { jobId } = job;
    const waiter = await openWaiter(job.ws);
    const res = await octetPush(
      app.url,
      { jobId, status: 'done', contentType: 'image/png', seed: 7, width: 24, height: 16 },
      png,
    );
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ ok: true, jobId, state: 'done', duplicate: false });
    const frames = await waiter.closed;
    expect(frames.binaries).toHaveLength(1);
    expect(frames.binaries[0]!.equals(png)).toBe(true);
    expect(frames.texts.find((t) => t.type === 'image')).toMatchObject({
      contentType: 'image/png',
      bytes: png.length,
      seed: 7,
    });
    const image = await fetch(`${app.url}/jobs/${jobId}/image`);
    expect(Buffer.from(await image.arrayBuffer()).equals(png)).toBe(true);
  });

  it('splits a body of several images as meta.parts lists them, in order', async () => {
    const jobId = testJobId();
    const meta: PushMeta = {
      jobId,
      status: 'done',
      seed: 5,
      count: 2,
      images: [
        { contentType: 'image/png', seed: 5, width: 24, height: 16 },
        { contentType: 'image/png', seed: 6, width: 16, height: 24 },
      ],
    };
    const encoded = encodeOctetPush(meta, [png, other]);
    expect(encoded?.contentType).toBe('application/octet-stream');
    const res = await octetPush(
      app.url,
      JSON.parse(Buffer.from(encoded!.metaHeader!, 'base64url').toString()) as PushMeta,
      encoded!.body,
    );
    expect(res.status).toBe(200);
    const late = await followJob(ws(jobId));
    expect(late.binaries.map((b) => b.equals(png) || (b.equals(other) ? 'other' : false))).toEqual([
      true,
      'other',
    ]);
    expect(late.texts.filter((t) => t.type === 'image').map((t) => t.seed)).toEqual([5, 6]);
  });

  it('carries a progress report’s preview as its body', async () => {
    const job = await enqueueJob(app.url, 'a fox in progress, octet-stream');
    const { jobId } = job;
    const start = await octetPush(app.url, { jobId, status: 'generating' }, Buffer.alloc(0));
    expect(start.status).toBe(200);
    const waiter = await openWaiter(job.ws);
    const res = await octetPush(
      app.url,
      {
        jobId,
        status: 'generating',
        progress: { step: 3, steps: 10 },
        preview: { contentType: 'image/png', width: 24, height: 16 },
      },
      png,
    );
    expect(res.status).toBe(200);
    await octetPush(app.url, { jobId, status: 'done', contentType: 'image/png' }, other);
    const frames = await waiter.closed;
    expect(frames.texts.find((t) => t.type === 'preview')).toMatchObject({ bytes: png.length });
    expect(frames.previews).toHaveLength(1);
    expect(frames.previews[0]!.equals(png)).toBe(true);
    expect(frames.binaries).toHaveLength(1);
    expect(frames.binaries[0]!.equals(other)).toBe(true);
  });

  it.each<[string, (meta: PushMeta, body: Buffer) => Record<string, string>, number, string]>([
    [
      'a meta changed after signing',
      (meta) => ({ [META_HEADER]: encodeMetaHeader({ ...meta, seed: 99 }) }),
      401,
      'BAD_SIGNATURE',
    ],
    [
      'another secret',
      (meta, body) => signOctetPushHeaders('another-secret-another-secret-another', meta, body),
      401,
      'BAD_SIGNATURE',
    ],
    [
      'a v3 signature without its meta header',
      () => ({ [META_HEADER]: '' }),
      401,
      'MISSING_SIGNATURE',
    ],
    [
      'a v2 signature (it does not cover a meta header)',
      (meta, body) => ({
        ...signPushHeaders(TEST_SECRET, meta.jobId, body),
        'content-type': 'application/octet-stream',
        [META_HEADER]: encodeMetaHeader(meta),
      }),
      400,
      'INVALID_PUSH',
    ],
    [
      'a stale timestamp',
      (meta, body) =>
        signOctetPushHeaders(TEST_SECRET, meta, body, Math.floor(Date.now() / 1000) - 3600),
      401,
      'STALE_SIGNATURE',
    ],
  ])('refuses %s and delivers nothing', async (_name, headers, status, code) => {
    const jobId = testJobId();
    const meta: PushMeta = { jobId, status: 'done', contentType: 'image/png' };
    const res = await octetPush(app.url, meta, png, headers(meta, png));
    expect(res.status).toBe(status);
    expect((await refusal(res)).code).toBe(code);
    expect(await state(jobId)).toBe(404);
  });

  it.each<[string, (jobId: string) => PushMeta | string, number, RegExp]>([
    ['a meta header that is not base64url', () => 'not base64url!', 400, /base64url/],
    [
      'a meta header that is not JSON',
      () => Buffer.from('{"jobId":').toString('base64url'),
      400,
      /not JSON/,
    ],
    [
      'a meta the schema refuses',
      (jobId) => encodeMetaHeader({ jobId, status: 'nope' } as never),
      400,
      /meta: /,
    ],
    [
      'meta.parts that do not add up to the body',
      (jobId) => ({ jobId, status: 'done', contentType: 'image/png', parts: [10] }),
      400,
      /adds up to 10 bytes/,
    ],
    [
      'a "failed" push with a body',
      (jobId) => ({ jobId, status: 'failed', error: { code: 'X', message: 'x' } }),
      400,
      /carries no image/,
    ],
  ])('answers %s with a 4xx that says so', async (_name, make, status, message) => {
    const jobId = testJobId();
    const made = make(jobId);
    const header = typeof made === 'string' ? made : encodeMetaHeader(made);
    // Signed with the header as sent: the relay gets past the signature to the meta.
    const meta = typeof made === 'string' ? { jobId, status: 'done' as const } : made;
    const signed = signOctetPushHeaders(TEST_SECRET, meta, png, undefined, undefined, header);
    const res = await fetch(`${app.url}/push`, {
      method: 'POST',
      headers: signed,
      body: png as Uint8Array<ArrayBuffer>,
    });
    expect(res.status).toBe(status);
    expect((await refusal(res)).message).toMatch(message);
    expect(await state(jobId)).toBe(404);
  });

  it('refuses a body that is not the one signed (the hash, at its end) and delivers nothing', async () => {
    const jobId = testJobId();
    const meta: PushMeta = { jobId, status: 'done', contentType: 'image/png' };
    const signed = signOctetPushHeaders(TEST_SECRET, meta, png);
    const tampered = Buffer.from(png);
    tampered[40] = tampered[40]! ^ 1;
    const res = await fetch(`${app.url}/push`, {
      method: 'POST',
      headers: signed,
      body: tampered as Uint8Array<ArrayBuffer>,
    });
    expect(res.status).toBe(401);
    expect((await refusal(res)).code).toBe('BAD_SIGNATURE');
    expect(await state(jobId)).toBe(404);
  });

  it('refuses a Content-Length other than the one signed', async () => {
    const jobId = testJobId();
    const signed = signOctetPushHeaders(TEST_SECRET, { jobId, status: 'done' }, png);
    const answer = await rawPush(
      app.url,
      { ...signed, 'content-length': String(png.length - 10) },
      png.subarray(0, png.length - 10),
    );
    expect(answer).toMatch(/^HTTP\/1\.1 401/);
    expect(answer).toMatch(/BAD_SIGNATURE/);
    expect(await state(jobId)).toBe(404);
  });

  it('refuses an image over PUSH_MAX_BYTES with 413 before reading it', async () => {
    const jobId = testJobId();
    const big = await noisePng(200, 200);
    expect(big.length).toBeGreaterThan(MAX);
    const meta: PushMeta = { jobId, status: 'done', contentType: 'image/png' };
    // Only the headers are sent: the answer comes without the body.
    const answer = await rawPush(
      app.url,
      signOctetPushHeaders(TEST_SECRET, meta, big),
      Buffer.alloc(0),
    );
    expect(answer).toMatch(/^HTTP\/1\.1 413/);
    expect(answer).toMatch(/PAYLOAD_TOO_LARGE/);
    expect(await state(jobId)).toBe(404);
  });

  it('refuses a body over the push limit from its declared length', async () => {
    const jobId = testJobId();
    const meta: PushMeta = { jobId, status: 'done', contentType: 'image/png' };
    const huge = Buffer.alloc(64);
    const answer = await rawPush(
      app.url,
      {
        ...signOctetPushHeaders(TEST_SECRET, meta, huge),
        'content-length': String(500 * 1024 * 1024),
      },
      Buffer.alloc(0),
    );
    expect(answer).toMatch(/^HTTP\/1\.1 413/);
  });

  it('answers a garbage image with INVALID_PUSH (never a 500) and delivers nothing', async () => {
    const jobId = testJobId();
    const garbage = Buffer.concat([png.subarray(0, 33), Buffer.alloc(500, 7)]);
    const res = await octetPush(
      app.url,
      { jobId, status: 'done', contentType: 'image/png' },
      garbage,
    );
    expect(res.status).toBe(400);
    expect((await refusal(res)).code).toBe('INVALID_PUSH');
    expect(await state(jobId)).toBe(404);
  });

  it('refuses a v3 signature on a multipart body', async () => {
    const jobId = testJobId();
    const meta: PushMeta = { jobId, status: 'done', contentType: 'image/png' };
    const { body, contentType } = encodePush(meta, png);
    const res = await fetch(`${app.url}/push`, {
      method: 'POST',
      headers: { ...signOctetPushHeaders(TEST_SECRET, meta, body), 'content-type': contentType },
      body: body as Uint8Array<ArrayBuffer>,
    });
    expect(res.status).toBe(400);
    expect((await refusal(res)).message).toMatch(/octet-stream/);
    expect(await state(jobId)).toBe(404);
  });

  it('is what the worker’s client sends; a meta too long for its header goes multipart', async () => {
    const sent: string[] = [];
    const pusher = createRelayPusher({
      relayUrl: app.url,
      secret: TEST_SECRET,
      fetch: (input, init) => {
        sent.push(new Headers(init?.headers).get('content-type') ?? '');
        return fetch(input, init);
      },
    });
    const short = testJobId();
    await pusher.push({ jobId: short, status: 'done', contentType: 'image/png', seed: 3 }, png);
    const long = testJobId();
    // A long prompt and reply target: past what X-Imagine-Meta may carry.
    await pusher.push(
      {
        jobId: long,
        status: 'done',
        contentType: 'image/png',
        prompt: 'a fox '.repeat(600),
        replyTarget: 'x'.repeat(6000),
      },
      png,
    );
    expect(sent[0]).toBe('application/octet-stream');
    expect(sent[1]).toMatch(/^multipart\/form-data; boundary=/);
    for (const jobId of [short, long]) {
      const image = await fetch(`${app.url}/jobs/${jobId}/image`);
      expect(Buffer.from(await image.arrayBuffer()).equals(png)).toBe(true);
    }
    const multipartOnly = createRelayPusher({
      relayUrl: app.url,
      secret: TEST_SECRET,
      form: 'multipart',
      fetch: (input, init) => {
        sent.push(new Headers(init?.headers).get('content-type') ?? '');
        return fetch(input, init);
      },
    });
    await multipartOnly.push({ jobId: testJobId(), status: 'generating' });
    expect(sent[2]).toMatch(/^multipart\/form-data/);
  });

  it('falls back to multipart against a relay from before it (which refuses a v3 signature), and stays there', async () => {
    const sent: string[] = [];
    // What a relay without the octet-stream push answers it: its v1/v2 check refuses v3=.
    const oldRelay: typeof fetch = async (input, init) => {
      const type = new Headers(init?.headers).get('content-type') ?? '';
      sent.push(type);
      if (type === 'application/octet-stream')
        return Response.json(
          { error: { code: 'BAD_SIGNATURE', message: 'signature must be v1=<64 hex digits>' } },
          { status: 401 },
        );
      return fetch(input, init);
    };
    const pusher = createRelayPusher({ relayUrl: app.url, secret: TEST_SECRET, fetch: oldRelay });
    const first = testJobId();
    await pusher.push({ jobId: first, status: 'done', contentType: 'image/png' }, png);
    const second = testJobId();
    await pusher.push({ jobId: second, status: 'done', contentType: 'image/png' }, other);
    expect(sent.map((t) => t.split(';')[0])).toEqual([
      'application/octet-stream',
      'multipart/form-data',
      'multipart/form-data',
    ]);
    for (const [jobId, bytes] of [
      [first, png],
      [second, other],
    ] as const) {
      const image = await fetch(`${app.url}/jobs/${jobId}/image`);
      expect(Buffer.from(await image.arrayBuffer()).equals(bytes)).toBe(true);
    }
    // A wrong secret is refused in either form: tried as multipart once more, then final.
    const strangers: string[] = [];
    const stranger = createRelayPusher({
      relayUrl: app.url,
      secret: 'not-the-secret-not-the-secret-not-the',
      fetch: (input, init) => {
        strangers.push(new Headers(init?.headers).get('content-type')?.split(';')[0] ?? '');
        return fetch(input, init);
      },
    });
    const refused = testJobId();
    await expect(
      stranger.push({ jobId: refused, status: 'done', contentType: 'image/png' }, png),
    ).rejects.toMatchObject({ code: 'BAD_SIGNATURE' });
    expect(strangers).toEqual(['application/octet-stream', 'multipart/form-data']);
    expect(await state(refused)).toBe(404);
  });
});
