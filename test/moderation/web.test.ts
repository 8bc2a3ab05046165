import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, inject, it } from 'vitest';
import { startTestImagine } from '../helpers/imagine.ts';
import { uniquePrefix } from './helpers.ts';

const json = (body: unknown): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(body),
});

describe.each([
  ['Redis', () => ({ REDIS_URL: inject('redisUrl'), REDIS_KEY_PREFIX: uniquePrefix() })],
  ['the embedded store', () => ({})],
])('the web path with limits in %s', (_name, env) => {
  let app: Awaited<ReturnType<typeof startTestImagine>> | undefined;
  let dataDir: string;
  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'imagine-web-'));
  });
  afterEach(async () => {
    await app?.stop();
    app = undefined;
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('POST /enqueue answers 429 with Retry-After past the per-user limit, and enqueues nothing', async () => {
    app = await startTestImagine(
      { ...env(), LIMIT_IMAGES_PER_USER: '8', DATA_DIR: dataDir },
      { role: 'relay' },
    );
    const tracker = app.relay!.relay.tracker;
    // Two jobs of the default 4 images use the 8.
    for (const prompt of ['a fox', 'a hare']) {
      expect((await fetch(`${app.url}/enqueue`, json({ prompt }))).status).toBe(202);
    }
    const before = tracker.size;
    const res = await fetch(`${app.url}/enqueue`, json({ prompt: 'an owl' }));
    expect(res.status).toBe(429);
    const retryAfter = Number(res.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(3600);
    const body = (await res.json()) as {
      error: { code: string; message: string; retryAfterSeconds: number };
    };
    expect(body.error.code).toBe('RATE_LIMITED');
    expect(body.error.message).toMatch(/used your 8 images/);
    expect(body.error.retryAfterSeconds).toBe(retryAfter);
    expect(tracker.size).toBe(before);
    expect(tracker.queuedCount).toBe(2);
  });

  it('each 202 says what is left (quota), yours or the site’s when fewer are left there', async () => {
    app = await startTestImagine(
      {
        ...env(),
        LIMIT_IMAGES_PER_USER: '6',
        LIMIT_IMAGES_PER_SCOPE: '9',
        TRUST_PROXY: 'true',
        DATA_DIR: dataDir,
      },
      { role: 'relay' },
    );
    const from = (ip: string, body: unknown): RequestInit => ({
      ...json(body),
      headers: { 'content-type': 'application/json', 'x-forwarded-for': ip },
    });
    type Queued = {
      quota: {
        of: string;
        limit: number;
        remaining: number;
        windowSeconds: number;
        resetSeconds: number;
      };
    };
    const first = await fetch(
      `${app.url}/enqueue`,
      from('198.51.100.1', { prompt: 'a fox', count: 1 }),
    );
    expect(first.status).toBe(202);
    const { quota } = (await first.json()) as Queued;
    expect(quota).toMatchObject({ of: 'user', limit: 6, remaining: 5, windowSeconds: 3600 });
    expect(quota.resetSeconds).toBeGreaterThan(3500);
    expect(quota.resetSeconds).toBeLessThanOrEqual(3600);
    const second = await fetch(
      `${app.url}/enqueue`,
      from('198.51.100.1', { prompt: 'a hare', count: 4 }),
    );
    expect(((await second.json()) as Queued).quota).toMatchObject({
      of: 'user',
      limit: 6,
      remaining: 1,
    });
    // Another visitor: 6 of their own, but the site's 9 has 4 left, and after 2 more, 2.
    const other = await fetch(
      `${app.url}/enqueue`,
      from('198.51.100.2', { prompt: 'an owl', count: 2 }),
    );
    expect(((await other.json()) as Queued).quota).toMatchObject({
      of: 'scope',
      limit: 9,
      remaining: 2,
    });
  });

  it('a 429 says how many images are left and when the window starts again (error.quota), yours or the site’s', async () => {
    app = await startTestImagine(
      {
        ...env(),
        LIMIT_IMAGES_PER_USER: '6',
        LIMIT_IMAGES_PER_SCOPE: '9',
        TRUST_PROXY: 'true',
        DATA_DIR: dataDir,
      },
      { role: 'relay' },
    );
    // Two visitors (X-Forwarded-For, the proxy the relay trusts).
    const from = (ip: string, body: unknown): RequestInit => ({
      ...json(body),
      headers: { 'content-type': 'application/json', 'x-forwarded-for': ip },
    });
    expect(
      (await fetch(`${app.url}/enqueue`, from('198.51.100.1', { prompt: 'a fox' }))).status,
    ).toBe(202);
    const mine = await fetch(`${app.url}/enqueue`, from('198.51.100.1', { prompt: 'a hare' }));
    expect(mine.status).toBe(429);
    const body = (await mine.json()) as {
      error: { code: string; message: string; retryAfterSeconds: number; quota: unknown };
    };
    const retryAfter = Number(mine.headers.get('retry-after'));
    expect(body.error.message).toMatch(
      /you have 2 of your 6 images per hour left here; ask for 2 or fewer/,
    );
    expect(body.error.quota).toEqual({
      of: 'user',
      limit: 6,
      remaining: 2,
      windowSeconds: 3600,
      resetSeconds: retryAfter,
    });
    // The whole site's 9: 4 are taken, a second visitor's 4 leave 1 for everyone.
    expect(
      (await fetch(`${app.url}/enqueue`, from('198.51.100.2', { prompt: 'an owl' }))).status,
    ).toBe(202);
    const site = await fetch(
      `${app.url}/enqueue`,
      from('198.51.100.3', { prompt: 'a crow', count: 2 }),
    );
    expect(site.status).toBe(429);
    const siteBody = (await site.json()) as { error: { quota: unknown } };
    expect(siteBody.error.quota).toEqual({
      of: 'scope',
      limit: 9,
      remaining: 1,
      windowSeconds: 3600,
      resetSeconds: Number(site.headers.get('retry-after')),
    });
  });

  it('POST /enqueue refuses blocked words (422) and a full queue (503 with Retry-After)', async () => {
    app = await startTestImagine(
      { ...env(), LIMIT_QUEUE_LENGTH: '1', DATA_DIR: dataDir },
      { role: 'relay' },
    );
    const blocked = await fetch(`${app.url}/enqueue`, json({ prompt: 'a n.u.d.e statue' }));
    expect(blocked.status).toBe(422);
    expect(((await blocked.json()) as { error: { code: string } }).error.code).toBe(
      'BLOCKED_CONTENT',
    );
    expect((await fetch(`${app.url}/enqueue`, json({ prompt: 'a fox' }))).status).toBe(202);
    const full = await fetch(`${app.url}/enqueue`, json({ prompt: 'a hare' }));
    expect(full.status).toBe(503);
    expect(Number(full.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(((await full.json()) as { error: { code: string } }).error.code).toBe('QUEUE_FULL');
    expect(app.relay!.relay.tracker.queuedCount).toBe(1);
  });
});
