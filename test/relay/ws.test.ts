/**
 * The WebSocket's upkeep with one shared heartbeat and nothing of the upgrade kept: a socket that
 * stops answering pings is cut, one that answers stays, several waiters on one job each get the
 * image, shutdown closes every socket, and an open socket keeps none of its upgrade's HTTP objects.
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
