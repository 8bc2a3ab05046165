/**
 * fly.toml as Fly.io runs it, for an app that is not called "imagine": each process group's
 * configuration is fly.toml's [env] + the secrets README lists + what Fly sets (FLY_APP_NAME),
 * with the group's command as the role.
 */
import { readFileSync } from 'node:fs';
import { parse } from 'smol-toml';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../contracts/config.ts';
import { startTestImagine, TEST_SECRET } from '../helpers/imagine.ts';

interface FlyToml {
  app: string;
  kill_timeout: string;
  env: Record<string, string>;
  processes: Record<string, string>;
}

const fly = parse(
  readFileSync(new URL('../../fly.toml', import.meta.url), 'utf8'),
) as unknown as FlyToml;
const secrets = {
  RELAY_SECRET: TEST_SECRET,
  SQS_QUEUE_URL: 'https://sqs.us-east-1.amazonaws.com/123456789012/imagine-jobs',
  MODAL_FLUX_URL: 'https://someone--imagine-flux-flux-web.modal.run',
};
const onFly = (role: string, app = 'pixel-party') =>
  loadConfig({ ...fly.env, ...secrets, FLY_APP_NAME: app }, { ROLE: role });
const seconds = (duration: string) => {
  const m = /^(\d+)(s|m)?$/.exec(duration);
  if (!m) throw new Error(`kill_timeout ${duration} is not a duration this test reads`);
  return Number(m[1]) * (m[2] === 'm' ? 60 : 1);
};

describe('fly.toml for an app with another name', () => {
  it('names the app nowhere but `app`', () => {
    const { app, ...rest } = fly;
    expect(JSON.stringify(rest)).not.toContain(app);
  });

  it('gives the relay its public URL and the workers the relay’s private address', () => {
    expect(Object.values(fly.processes).sort()).toEqual(['relay', 'worker']);
    expect(onFly('relay').PUBLIC_URL).toBe('https://pixel-party.fly.dev');
    expect(onFly('worker').RELAY_URL).toBe('http://relay.process.pixel-party.internal:8080');
  });

  it('lets a set PUBLIC_URL or RELAY_URL win (a custom domain)', () => {
    const config = loadConfig(
      {
        ...fly.env,
        ...secrets,
        FLY_APP_NAME: 'pixel-party',
        PUBLIC_URL: 'https://images.example.com',
        RELAY_URL: 'http://relay.example.internal:9000',
      },
      { ROLE: 'worker' },
    );
    expect(config.PUBLIC_URL).toBe('https://images.example.com');
    expect(config.RELAY_URL).toBe('http://relay.example.internal:9000');
  });

  it('derives nothing off Fly, and keeps a one-process run on loopback', () => {
    expect(loadConfig({}).PUBLIC_URL).toBeUndefined();
    expect(loadConfig({}).RELAY_URL).toBeUndefined();
    expect(loadConfig({ FLY_APP_NAME: 'pixel-party' }).RELAY_URL).toBeUndefined();
  });

  it('refuses a FLY_APP_NAME that is not an app name', () => {
    expect(() => loadConfig({ FLY_APP_NAME: 'evil.example.com/' })).toThrow(/FLY_APP_NAME/);
  });

  it('gives a stopping worker longer than its drain and hand-back before Fly kills it', () => {
    const drain = onFly('worker').WORKER_DRAIN_SECONDS;
    // Drain, then up to 10 s to hand unfinished jobs back (queue/sqs.ts stop()), then closing.
    expect(seconds(fly.kill_timeout)).toBeGreaterThanOrEqual(drain + 15);
  });

  it('serves the page to a browser on https://<app>.fly.dev and refuses other origins', async () => {
    const app = await startTestImagine({ FLY_APP_NAME: 'pixel-party' });
    try {
      const enqueue = (origin: string) =>
        fetch(`${app.url}/enqueue`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', origin },
          body: JSON.stringify({ prompt: 'a party of pixels', width: 64, height: 64 }),
        });
      const ok = await enqueue('https://pixel-party.fly.dev');
      expect(ok.status).toBe(202);
      expect(((await ok.json()) as { ws: string }).ws).toMatch(
        /^wss:\/\/pixel-party\.fly\.dev\/ws\?jobId=/,
      );
      expect((await enqueue('https://imagine.fly.dev')).status).toBe(403);
    } finally {
      await app.stop();
    }
  });
});
