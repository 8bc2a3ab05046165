/**
 * Connection hygiene: half-sent requests are cut within seconds, a slow answer is not, an open
 * WebSocket outlives the idle timeout, and client faults (aborted uploads, bad WebSocket frames)
 * are logged below error level, once per class, not once per connection.
 */
import { connect, type Socket } from 'node:net';
import type { FastifyPluginAsync } from 'fastify';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { enqueueJob } from '../helpers/enqueue.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { capturingLogger, LEVELS } from '../helpers/logs.ts';

/** Open a raw TCP connection to the relay. */
function rawConnection(baseUrl: string): Promise<Socket> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Resolves with what the server wrote once it closes the connection; rejects after `guardMs`. */
function serverCloses(socket: Socket, guardMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let received = '';
    socket.on('data', (d) => {
      received += d.toString('latin1');
    });
    socket.on('error', () => {});
    const guard = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the relay kept the connection open for ${guardMs} ms`));
    }, guardMs);
    socket.once('close', () => {
      clearTimeout(guard);
      resolve(received);
    });
  });
}

const slowRoute: FastifyPluginAsync = async (app) => {
  app.get('/test/slow', async () => {
    await new Promise((r) => setTimeout(r, 2500));
    return { slow: true };
  });
};

describe('connection limits', () => {
  const { logger, lines } = capturingLogger();
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  beforeAll(async () => {
    app = await startTestImagine(
      { HTTP_IDLE_TIMEOUT_SECONDS: '1', HTTP_REQUEST_TIMEOUT_SECONDS: '3' },
      { role: 'relay', logger, plugins: [slowRoute] },
    );
  });
  afterAll(async () => {
    await app?.stop();
  });

  it('cuts a chunked /enqueue body that stops arriving', async () => {
    const socket = await rawConnection(app.url);
    socket.write(
      'POST /enqueue HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
        'Transfer-Encoding: chunked\r\n\r\n5\r\n{"pro\r\n',
    );
    await serverCloses(socket, 10_000);
  });

  it('cuts a body dribbled a byte at a time (each gap under the idle timeout)', async () => {
    const socket = await rawConnection(app.url);
    socket.write(
      'POST /enqueue HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n',
    );
    const drip = setInterval(() => socket.writable && socket.write('x'), 300);
    try {
      const answer = await serverCloses(socket, 15_000);
      expect(answer).toMatch(/^HTTP\/1\.1 408/);
    } finally {
      clearInterval(drip);
    }
  });

  it('cuts a connection that never finishes its headers', async () => {
    const socket = await rawConnection(app.url);
    socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
    await serverCloses(socket, 10_000);
  });

  it('still answers a request whose handler takes longer than the idle timeout', async () => {
    const res = await fetch(`${app.url}/test/slow`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ slow: true });
  });

  it('keeps an idle WebSocket open past the idle timeout', async () => {
    const { ws } = await enqueueJob(app.url, 'a quiet socket');
    const socket = new WebSocket(ws);
    const closed = vi.fn();
    socket.on('close', closed);
    await new Promise((r) => socket.once('open', r));
    await new Promise((r) => setTimeout(r, 2500));
    expect(closed).not.toHaveBeenCalled();
    expect(socket.readyState).toBe(WebSocket.OPEN);
    socket.close();
  });

  it('logs bad WebSocket frames from many connections once, below error level', async () => {
    const { ws } = await enqueueJob(app.url, 'bad frames');
    const before = lines.length;
    for (let i = 0; i < 4; i++) {
      const socket = new WebSocket(ws);
      await new Promise((r) => socket.once('open', r));
      const closed = new Promise((r) => socket.once('close', r));
      socket.on('error', () => {});
      // FIN + reserved opcode 3, masked, empty: a protocol error.
      (socket as unknown as { _socket: Socket })._socket.write(
        Buffer.from([0x83, 0x80, 1, 2, 3, 4]),
      );
      await closed;
    }
    await vi.waitFor(() =>
      expect(
        lines.slice(before).filter((l) => String(l.msg).includes('websocket')),
      ).not.toHaveLength(0),
    );
    const mine = lines.slice(before).filter((l) => String(l.msg).includes('websocket'));
    expect(mine).toHaveLength(1);
    expect(mine[0]!.level).toBeLessThan(LEVELS.warn);
    expect(lines.slice(before).filter((l) => l.level >= LEVELS.error)).toEqual([]);
  });
});

describe('an aborted upload', () => {
  // Its own relay and log: the sampled client-fault lines of the tests above must not hide it.
  const fresh = capturingLogger();
  let own: Awaited<ReturnType<typeof startTestImagine>>;
  beforeAll(async () => {
    own = await startTestImagine({}, { role: 'relay', logger: fresh.logger });
  });
  afterAll(async () => {
    await own?.stop();
  });

  it('treats an aborted /push upload as the client going away, not an unhandled error', async () => {
    const socket = await rawConnection(own.url);
    socket.write(
      'POST /push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
        `Content-Length: 100000\r\nX-Imagine-Timestamp: ${Math.floor(Date.now() / 1000)}\r\n` +
        `X-Imagine-Signature: v1=${'0'.repeat(64)}\r\n\r\n{"job_id": "`,
    );
    await new Promise((r) => setTimeout(r, 100));
    socket.destroy();
    await vi.waitFor(() =>
      expect(fresh.lines.some((l) => /abort|unhandled/.test(String(l.msg)))).toBe(true),
    );
    expect(fresh.lines.filter((l) => l.level >= LEVELS.error)).toEqual([]);
  });
});
