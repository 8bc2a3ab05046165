/** `/metrics` is not public by default: loopback only, a token, or a listener of its own. */
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
});
