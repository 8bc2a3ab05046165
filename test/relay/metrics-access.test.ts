/** `/metrics` is not public by default: loopback only, a token, or a listener of its own. */
import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startTestImagine } from '../helpers/imagine.ts';
import { freePort } from '../helpers/net.ts';

describe('GET /metrics access', () => {
  let app: Awaited<ReturnType<typeof startTestImagine>> | undefined;
  afterEach(async () => {
    await app?.stop();
    app = undefined;
  });
  const code = async (res: Response) =>
    ((await res.json()) as { error: { code: string } }).error.code;

  it('by default answers a direct loopback scrape, and refuses a request a proxy relayed', async () => {
    app = await startTestImagine({}, { role: 'relay' });
    const direct = await fetch(`${app.url}/metrics`);
    expect(direct.status).toBe(200);
    expect(await direct.text()).toContain('imagine_jobs_total');
    for (const headers of [
      { 'x-forwarded-for': '203.0.113.9' },
      { 'fly-client-ip': '203.0.113.9' },
      { forwarded: 'for=203.0.113.9' },
    ]) {
      const proxied = await fetch(`${app.url}/metrics`, { headers });
      expect(proxied.status).toBe(403);
      expect(await code(proxied)).toBe('FORBIDDEN');
    }
  });

  it('with METRICS_TOKEN wants the bearer token', async () => {
    const token = 'metrics-token-0123456789';
    app = await startTestImagine({ METRICS_TOKEN: token }, { role: 'relay' });
    expect((await fetch(`${app.url}/metrics`)).status).toBe(401);
    const wrong = await fetch(`${app.url}/metrics`, {
      headers: { authorization: 'Bearer metrics-token-0123456780' },
    });
    expect(wrong.status).toBe(403);
    const right = await fetch(`${app.url}/metrics`, {
      headers: { authorization: `Bearer ${token}`, 'x-forwarded-for': '203.0.113.9' },
    });
    expect(right.status).toBe(200);
    expect(await right.text()).toContain('imagine_pushes_total');
  });

  it('with METRICS_PORT serves them on that port only', async () => {
    const port = await freePort();
    app = await startTestImagine({ METRICS_PORT: String(port) }, { role: 'relay' });
    expect((await fetch(`${app.url}/metrics`)).status).toBe(404);
    const own = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(own.status).toBe(200);
    expect(await own.text()).toContain('imagine_websockets_open');
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(404);
  });

  it('a METRICS_PORT already in use stops the start-up and names the setting', async () => {
    // Before, the listener was started from an onListen hook, whose error Fastify only logs:
    // the relay ran on without its metrics.
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as { port: number }).port;
    try {
      await expect(
        startTestImagine({ METRICS_PORT: String(port) }, { role: 'relay' }),
      ).rejects.toThrow(
        `METRICS_PORT ${port} on 127.0.0.1 is already in use; set METRICS_PORT to another port`,
      );
    } finally {
      await new Promise((r) => taken.close(r));
    }
  });

  it('a start-up that fails on PORT leaves METRICS_PORT free again', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const busy = (taken.address() as { port: number }).port;
    const metricsPort = await freePort();
    try {
      await expect(
        startTestImagine(
          { PORT: String(busy), METRICS_PORT: String(metricsPort) },
          { role: 'relay' },
        ),
      ).rejects.toMatchObject({ code: 'EADDRINUSE' });
      // Nothing of the failed relay holds the metrics port: it can be listened on at once.
      const again = createServer();
      await new Promise<void>((resolve, reject) => {
        again.once('error', reject);
        again.listen(metricsPort, '127.0.0.1', resolve);
      });
      await new Promise((r) => again.close(r));
    } finally {
      await new Promise((r) => taken.close(r));
    }
  });
});
