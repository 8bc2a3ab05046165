/**
 * The WebSocket's upkeep with one shared heartbeat and nothing of the upgrade kept: a socket that
 * stops answering pings is cut, one that answers stays, several waiters on one job each get the
 * image, shutdown closes every socket, and an open socket keeps none of its upgrade's HTTP objects.
 * The upgrade still passes every check first (origin, jobId, a plain GET told to poll), and no
 * compression is negotiated.
 */
import type { IncomingMessage } from 'node:http';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { FastifyPluginAsync } from 'fastify';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { enqueueJob } from '../helpers/enqueue.ts';
import { pngOf } from '../helpers/images.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { sendPush } from '../helpers/push.ts';
import { openWaiter } from '../helpers/ws.ts';

type Imagine = Awaited<ReturnType<typeof startTestImagine>>;

/** Every upgrade request the server saw, held weakly. */
const upgrades: Array<WeakRef<IncomingMessage>> = [];
const watchUpgrades: FastifyPluginAsync = async (app) => {
  app.server.on('upgrade', (req: IncomingMessage) => {
    upgrades.push(new WeakRef(req));
  });
};

describe('WebSocket upkeep (one heartbeat for all sockets)', () => {
  let app: Imagine;
  beforeAll(async () => {
    // A heartbeat every second; the idle close far away, so only the heartbeat acts.
    app = await startTestImagine(
      { WS_HEARTBEAT_SECONDS: '1', WS_IDLE_SECONDS: '3600' },
      { role: 'relay', plugins: [watchUpgrades] },
    );
  });
  afterAll(async () => {
    await app?.stop();
  });
  const openSockets = () => app.relay!.relay.hub.openSockets;

  it('cuts a socket that stops answering pings, and keeps one that answers', async () => {
    const { ws } = await enqueueJob(app.url, 'a peer that vanished');
    // A client whose pongs never come back (a peer gone without a close frame).
    const silent = new WebSocket(ws, { autoPong: false });
    const answering = new WebSocket(ws);
    let silentPings = 0;
    let answeredPings = 0;
    silent.on('ping', () => silentPings++);
    answering.on('ping', () => answeredPings++);
    const silentClosed = new Promise<number>((resolve) => silent.on('close', resolve));
    await Promise.all([
      new Promise((r) => silent.once('message', r)),
      new Promise((r) => answering.once('message', r)),
    ]);
    expect(openSockets()).toBe(2);
    // Terminated without a close frame: the client sees 1006.
    expect(await silentClosed).toBe(1006);
    expect(silentPings).toBeGreaterThanOrEqual(1);
    // The answering socket outlives more sweeps than the silent one got.
    await vi.waitFor(() => expect(answeredPings).toBeGreaterThan(silentPings + 1), {
      timeout: 10_000,
    });
    expect(answering.readyState).toBe(WebSocket.OPEN);
    await vi.waitFor(() => expect(openSockets()).toBe(1));
    answering.close();
    await vi.waitFor(() => expect(openSockets()).toBe(0));
  });

  it('sends the image to each of several waiters on one job after one of them left', async () => {
    const { jobId, ws } = await enqueueJob(app.url, 'three waiters');
    const [a, b, c] = await Promise.all([openWaiter(ws), openWaiter(ws), openWaiter(ws)]);
    expect(openSockets()).toBe(3);
    b.socket.close();
    await b.closed;
    await vi.waitFor(() => expect(openSockets()).toBe(2));
    const png = await pngOf(8, 8);
    const res = await sendPush(app.url, { jobId, status: 'done', contentType: 'image/png' }, png);
    expect(res.status).toBe(200);
    for (const waiter of [a, c]) {
      const got = await waiter.closed;
      expect(got.closeCode).toBe(1000);
      expect(got.binaries).toHaveLength(1);
      expect(got.binaries[0]!.equals(png)).toBe(true);
    }
    expect(b.frames.binaries).toHaveLength(0);
    await vi.waitFor(() => expect(openSockets()).toBe(0));
  });

  it('keeps none of the upgrade request alive while the socket stays open', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const { ws } = await enqueueJob(app.url, 'a long wait');
    upgrades.length = 0;
    const waiter = await openWaiter(ws);
    expect(upgrades).toHaveLength(1);
    // WeakRefs hold their target until the current job ends: let it end, then collect.
    await new Promise((r) => setTimeout(r, 10));
    gc();
    await new Promise((r) => setTimeout(r, 10));
    gc();
    expect(waiter.socket.readyState).toBe(WebSocket.OPEN);
    expect(upgrades[0]!.deref()).toBeUndefined();
    waiter.socket.close();
    await waiter.closed;
  });
});

describe('WebSocket upgrades the relay refuses, and what it agrees to', () => {
  let app: Imagine;
  beforeAll(async () => {
    app = await startTestImagine({}, { role: 'relay' });
  });
  afterAll(async () => {
    await app?.stop();
  });

  /** The HTTP answer to an upgrade that was refused, status and body. */
  const refused = (url: string, headers: Record<string, string> = {}) =>
    new Promise<{ status: number; body: { error: { code: string } } }>((resolve, reject) => {
      const socket = new WebSocket(url, { headers });
      socket.on('unexpected-response', (_req, res) => {
        let text = '';
        res.on('data', (d: Buffer) => {
          text += d.toString();
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
      });
      socket.on('open', () => reject(new Error('upgrade should have been refused')));
      socket.on('error', () => {});
    });

  it('answers a foreign origin, a malformed id and an unknown job with their coded 4xx', async () => {
    const { ws } = await enqueueJob(app.url, 'a guarded socket');
    const foreign = await refused(ws, { origin: 'https://evil.example' });
    expect(foreign.status).toBe(403);
    expect(foreign.body.error.code).toBe('ORIGIN_NOT_ALLOWED');
    const base = app.url.replace('http', 'ws');
    const malformed = await refused(`${base}/ws?jobId=not-an-id`);
    expect(malformed).toMatchObject({ status: 400, body: { error: { code: 'INVALID_JOB_ID' } } });
    const unknown = await refused(`${base}/ws?jobId=AAAAAAAAAAAAAAAAAAAAAAAA`);
    expect(unknown).toMatchObject({ status: 404, body: { error: { code: 'JOB_NOT_FOUND' } } });
  });

  it('answers a plain GET of a job’s socket URL with 426 and where to poll', async () => {
    const { jobId } = await enqueueJob(app.url, 'no upgrade');
    const res = await fetch(`${app.url}/ws?jobId=${jobId}`);
    expect(res.status).toBe(426);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('BAD_REQUEST');
    expect(body.error.message).toContain('/jobs/');
  });

  it('does not agree to permessage-deflate when the client offers it', async () => {
    const { ws } = await enqueueJob(app.url, 'uncompressed');
    // ws's client offers permessage-deflate by default.
    const socket = new WebSocket(ws, { perMessageDeflate: true });
    await new Promise((r) => socket.once('open', r));
    expect(socket.extensions).toBe('');
    socket.close();
  });
});

describe('WebSocket on shutdown', () => {
  it('closes every open socket when the relay stops', async () => {
    const app = await startTestImagine({}, { role: 'relay' });
    const { ws } = await enqueueJob(app.url, 'still waiting at shutdown');
    const waiters = await Promise.all([openWaiter(ws), openWaiter(ws)]);
    await app.stop();
    for (const waiter of waiters) {
      const got = await waiter.closed;
      expect(got.closeCode).not.toBe(1006);
    }
  });
});
