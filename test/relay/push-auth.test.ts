/**
 * `/push` is authenticated before its body is accepted: a v2 header signature (timestamp, job
 * id, declared length, body hash) is checked on the headers alone, the hash at the end; body-
 * signed v1 pushes (old workers) are still taken, but only a few at a time, so strangers cannot
 * make the relay hold more than a bounded number of unauthenticated bodies.
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signPush, signPushHeaders } from '../../contracts/push.ts';
import { LEGACY_PUSHES_IN_FLIGHT } from '../../relay/push-auth.ts';
import { createRelayPusher, encodePush } from '../../worker/push-client.ts';
import { pngOf } from '../helpers/images.ts';
import { startTestImagine, TEST_SECRET } from '../helpers/imagine.ts';
import { sendPush, testJobId } from '../helpers/push.ts';

/** Send raw header lines; resolve with what the relay answered once it closed or answered. */
function rawRequest(
  baseUrl: string,
  head: string,
  body = '',
): Promise<{ socket: Socket; answer: Promise<string> }> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => {
      socket.write(head + body);
      let received = '';
      const answer = new Promise<string>((res) => {
        socket.on('data', (d) => {
          received += d.toString('latin1');
          if (/\r\n\r\n/.test(received)) res(received);
        });
        socket.on('close', () => res(received));
      });
      resolve({ socket, answer });
    });
    socket.once('error', reject);
  });
}

const code = async (res: Response) =>
  ((await res.json()) as { error: { code: string } }).error.code;

describe('push authentication', () => {
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  let png: Buffer;
  beforeAll(async () => {
    app = await startTestImagine({}, { role: 'relay' });
    png = await pngOf(16, 16);
  });
  afterAll(async () => {
    await app?.stop();
  });

  it('the worker’s client signs its push (v3, octet-stream) and it is delivered', async () => {
    const jobId = testJobId();
    const pusher = createRelayPusher({ relayUrl: app.url, secret: TEST_SECRET });
    await pusher.push({ jobId, status: 'done', contentType: 'image/png', seed: 1 }, png);
    expect((await fetch(`${app.url}/jobs/${jobId}`)).status).toBe(200);
  });

  it('refuses a wrongly signed v2 push from its headers alone, before any body, and hangs up', async () => {
    const jobId = testJobId();
    const fake = signPushHeaders('another-secret-another-secret-another-secret', jobId, png);
    const head =
      'POST /push HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=zz\r\n' +
      Object.entries({ ...fake, 'content-length': String(8 * 1024 * 1024) })
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('') +
      '\r\n';
    // Not one byte of the 8 MiB body is sent: the answer must come anyway.
    const { socket, answer } = await rawRequest(app.url, head);
    const text = await answer;
    expect(text).toMatch(/^HTTP\/1\.1 401/);
    expect(text).toMatch(/BAD_SIGNATURE/);
    expect(text.toLowerCase()).toContain('connection: close');
    socket.destroy();
  });

  it('refuses a v2 push whose declared length is over the limit before reading it', async () => {
    const jobId = testJobId();
    const signed = signPushHeaders(TEST_SECRET, jobId, png);
    const head =
      'POST /push HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=zz\r\n' +
      Object.entries({ ...signed, 'content-length': String(500 * 1024 * 1024) })
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('') +
      '\r\n';
    const { socket, answer } = await rawRequest(app.url, head);
    expect(await answer).toMatch(/^HTTP\/1\.1 413/);
    socket.destroy();
  });

  it('refuses a v2 push whose body is not the one signed, and delivers nothing', async () => {
    const jobId = testJobId();
    const { body, contentType } = encodePush(
      { jobId, status: 'done', contentType: 'image/png' },
      png,
    );
    const signed = signPushHeaders(TEST_SECRET, jobId, body);
    const tampered = Buffer.from(body);
    tampered[tampered.length - 40] = tampered[tampered.length - 40]! ^ 1;
    const res = await fetch(`${app.url}/push`, {
      method: 'POST',
      headers: { 'content-type': contentType, ...signed },
      body: tampered as Uint8Array<ArrayBuffer>,
    });
    expect(res.status).toBe(401);
    expect(await code(res)).toBe('BAD_SIGNATURE');
    expect((await fetch(`${app.url}/jobs/${jobId}`)).status).toBe(404);
  });

  it('refuses a v2 signature for one job on a body about another', async () => {
    const signedFor = testJobId();
    const other = testJobId();
    const { body, contentType } = encodePush({ jobId: other, status: 'generating' });
    const res = await fetch(`${app.url}/push`, {
      method: 'POST',
      headers: { 'content-type': contentType, ...signPushHeaders(TEST_SECRET, signedFor, body) },
      body: body as Uint8Array<ArrayBuffer>,
    });
    expect(res.status).toBe(401);
    expect((await fetch(`${app.url}/jobs/${other}`)).status).toBe(404);
  });

  it('reads at most a few body-signed (v1) pushes at once; the rest wait their turn', async () => {
    const ts = Math.floor(Date.now() / 1000);
    const head =
      'POST /push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n' +
      `X-Imagine-Timestamp: ${ts}\r\nX-Imagine-Signature: v1=${'0'.repeat(64)}\r\n\r\n`;
    // Strangers hold LEGACY_PUSHES_IN_FLIGHT bodies open, a few bytes each.
    const held = await Promise.all(
      Array.from({ length: LEGACY_PUSHES_IN_FLIGHT }, () => rawRequest(app.url, head, '{"job_id"')),
    );
    await new Promise((r) => setTimeout(r, 200));
    const jobId = testJobId();
    const body = Buffer.from(JSON.stringify({ job_id: jobId, image: png.toString('base64') }));
    const v1 = signPush(TEST_SECRET, body);
    const legacy = () =>
      fetch(`${app.url}/push`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-imagine-timestamp': v1.timestamp,
          'x-imagine-signature': v1.signature,
        },
        body: body as Uint8Array<ArrayBuffer>,
      });
    const refused = await legacy();
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).toBe('1');
    // A v2 push is not held up by them.
    const v2 = await sendPushV2(app.url, testJobId(), png);
    expect(v2.status).toBe(200);
    for (const h of held) h.socket.destroy();
    await new Promise((r) => setTimeout(r, 200));
    const accepted = await legacy();
    expect(accepted.status).toBe(200);
    expect((await fetch(`${app.url}/jobs/${jobId}`)).status).toBe(200);
  });

  it('still answers the helpers’ v1 pushes (old workers keep working)', async () => {
    const res = await sendPush(app.url, { jobId: testJobId(), status: 'generating' });
    expect(res.status).toBe(200);
  });
});

async function sendPushV2(baseUrl: string, jobId: string, image: Buffer): Promise<Response> {
  const { body, contentType } = encodePush(
    { jobId, status: 'done', contentType: 'image/png' },
    image,
  );
  return fetch(`${baseUrl}/push`, {
    method: 'POST',
    headers: { 'content-type': contentType, ...signPushHeaders(TEST_SECRET, jobId, body) },
    body: body as Uint8Array<ArrayBuffer>,
  });
}
