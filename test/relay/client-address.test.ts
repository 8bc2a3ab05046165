/**
 * Behind a proxy, a client must not pick its own rate-limit identity: entries it wrote into
 * X-Forwarded-For are never read, only what the proxy itself appended (or Fly-Client-IP).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../contracts/config.ts';
import { startTestImagine } from '../helpers/imagine.ts';

/** Ten requests from one client that forges a different X-Forwarded-For entry each time. */
async function admittedOutOfTen(
  baseUrl: string,
  headersFor: (i: number) => Record<string, string>,
): Promise<number> {
  let admitted = 0;
  for (let i = 0; i < 10; i++) {
    const res = await fetch(`${baseUrl}/enqueue`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headersFor(i) },
      // One image each: the limit below is 3 images.
      body: JSON.stringify({ prompt: `fox ${i}`, width: 64, height: 64, count: 1 }),
    });
    if (res.status === 202) admitted++;
    else expect(res.status).toBe(429);
  }
  return admitted;
}

describe('TRUST_PROXY', () => {
  let app: Awaited<ReturnType<typeof startTestImagine>> | undefined;
  afterEach(async () => {
    await app?.stop();
    app = undefined;
  });
  const limits = { LIMIT_IMAGES_PER_USER: '3', LIMIT_CONCURRENT_PER_USER: '100' };

  it('true: one trusted hop, the entry the proxy appended; forged left entries are ignored', async () => {
    app = await startTestImagine({ ...limits, TRUST_PROXY: 'true' }, { role: 'relay' });
    // The proxy appends the address it saw (10.9.9.9) after whatever the client sent.
    const admitted = await admittedOutOfTen(app.url, (i) => ({
      'x-forwarded-for': `198.51.100.${i}, 10.9.9.9`,
    }));
    expect(admitted).toBe(3);
  });

  it('fly: Fly-Client-IP decides, X-Forwarded-For does not', async () => {
    app = await startTestImagine({ ...limits, TRUST_PROXY: 'fly' }, { role: 'relay' });
    const admitted = await admittedOutOfTen(app.url, (i) => ({
      'fly-client-ip': '203.0.113.7',
      'x-forwarded-for': `198.51.100.${i}, 203.0.113.${i}`,
    }));
    expect(admitted).toBe(3);
    // Another Fly client has its own count.
    expect(await admittedOutOfTen(app.url, () => ({ 'fly-client-ip': '203.0.113.8' }))).toBe(3);
  });

  it('a hop count reads that many proxies back', async () => {
    app = await startTestImagine({ ...limits, TRUST_PROXY: '2' }, { role: 'relay' });
    const admitted = await admittedOutOfTen(app.url, (i) => ({
      'x-forwarded-for': `198.51.100.${i}, 192.0.2.1, 10.0.0.2`,
    }));
    expect(admitted).toBe(3);
  });

  it('parses its values and refuses others', () => {
    const parse = (v: string) => loadConfig({ TRUST_PROXY: v }).TRUST_PROXY;
    expect(parse('false')).toBe(false);
    expect(parse('true')).toBe(1);
    expect(parse('fly')).toBe('fly');
    expect(parse('3')).toBe(3);
    expect(() => parse('everything')).toThrow(/TRUST_PROXY/);
  });
});
