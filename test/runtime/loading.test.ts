/**
 * Each role loads what its configuration uses and nothing else: every module kept is memory
 * the process holds and heap every full garbage collection marks (issue #14). A child process
 * with a load hook (test/fixtures/loaded-modules.ts) reports what it loaded.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { loadConfig } from '../../contracts/config.ts';
import { configuredGeneratorName } from '../../runtime/start.ts';
import { generatorFromConfig } from '../../worker/generators/index.ts';
import { freePort } from '../helpers/net.ts';

const fixture = fileURLToPath(new URL('../fixtures/loaded-modules.ts', import.meta.url));
const dataDir = mkdtempSync(join(tmpdir(), 'imagine-loading-'));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

interface Loaded {
  started: string[];
  afterPlain: string[];
  afterUnusual: string[];
  sizes: Array<{ width: number; height: number }>;
}

async function loadedBy(role: string, env: Record<string, string>): Promise<Loaded> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [
      fixture,
      role,
      JSON.stringify({
        HOST: '127.0.0.1',
        PORT: '0',
        LOG_LEVEL: 'silent',
        SAFETY: 'off',
        DATA_DIR: dataDir,
        RELAY_SECRET: 'test-relay-secret-0123456789abcdef0123456789',
        ...env,
      }),
    ],
    { timeout: 30_000, maxBuffer: 64 * 1024 * 1024 },
  );
  return JSON.parse(stdout) as Loaded;
}

/** Whether a package (from node_modules) is among the loaded URLs. */
const hasPackage = (urls: string[], name: string) =>
  urls.some((u) => u.includes(`/node_modules/${name}/`));
/** The loaded modules of one of this repository's folders. */
const ofFolder = (urls: string[], folder: string) => {
  const root = new URL('../../', import.meta.url).href;
  return urls.filter((u) => u.startsWith(`${root}${folder}/`));
};

/** The rate-limiter-flexible limiters loaded, by name. */
const limiters = (urls: string[]) =>
  urls
    .flatMap((u) => /\/rate-limiter-flexible\/lib\/(RateLimiter[A-Za-z]+)\.js$/.exec(u)?.[1] ?? [])
    .filter((name) => !/Abstract|Res$/.test(name))
    .sort();

// An SQS queue nobody answers: a relay sends nothing to it until a job is enqueued.
const sqs = {
  SQS_QUEUE_URL: 'http://127.0.0.1:9/000000000000/jobs',
  SQS_ENDPOINT: 'http://127.0.0.1:9',
  AWS_ACCESS_KEY_ID: 'test',
  AWS_SECRET_ACCESS_KEY: 'test',
};

describe('what each role loads', () => {
  it('a relay on SQS without Redis loads no Redis client, no sharp and no generator', async () => {
    const loaded = await loadedBy('relay', sqs);
    // The hook does see packages: the relay's own are there.
    expect(hasPackage(loaded.started, 'fastify')).toBe(true);
    expect(hasPackage(loaded.started, '@aws-sdk/client-sqs')).toBe(true);
    expect(hasPackage(loaded.started, 'ioredis')).toBe(false);
    expect(hasPackage(loaded.started, 'sharp')).toBe(false);
    expect(hasPackage(loaded.started, 'cockatiel')).toBe(false);
    expect(ofFolder(loaded.started, 'worker')).toEqual([]);
    // Of rate-limiter-flexible, the memory limiter only (not its index of every store).
    expect(limiters(loaded.started)).toEqual(['RateLimiterMemory']);
    // A plain PNG is decided by the walk alone; an unusual one needs sharp, loaded then.
    expect(hasPackage(loaded.afterPlain, 'sharp')).toBe(false);
    expect(hasPackage(loaded.afterUnusual, 'sharp')).toBe(true);
    expect(loaded.sizes).toEqual([
      { width: 4, height: 4 },
      { width: 4, height: 4 },
    ]);
  });

  it('a relay with REDIS_URL loads the Redis client', async () => {
    const loaded = await loadedBy('relay', { ...sqs, REDIS_URL: inject('redisUrl') });
    expect(hasPackage(loaded.started, 'ioredis')).toBe(true);
    // Its Redis limiter is loaded when a count is first taken.
    expect(limiters(loaded.started)).toEqual(['RateLimiterMemory']);
    expect(hasPackage(loaded.started, 'sharp')).toBe(false);
    expect(ofFolder(loaded.started, 'worker')).toEqual([]);
  });

  it('chat adapters load no Redis client without REDIS_URL', async () => {
    const discord = await loadedBy('relay', {
      ...sqs,
      DISCORD_PUBLIC_KEY: 'a'.repeat(64),
    });
    expect(ofFolder(discord.started, 'bot/discord').length).toBeGreaterThan(0);
    expect(hasPackage(discord.started, 'ioredis')).toBe(false);
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [fixture, 'import', 'bot/slack/event-ids.ts'],
      { timeout: 30_000 },
    );
    const slack = (JSON.parse(stdout) as Pick<Loaded, 'started'>).started;
    expect(ofFolder(slack, 'bot/slack')).toHaveLength(1);
    expect(hasPackage(slack, 'ioredis')).toBe(false);
  });

  it('a worker on its own loads no relay, chat or Redis modules, nor the router', async () => {
    const loaded = await loadedBy('worker', {
      ...sqs,
      RELAY_URL: 'http://127.0.0.1:9',
      // Its health listener too (as on Fly): a single backend has no router to show.
      METRICS_PORT: String(await freePort()),
    });
    expect(ofFolder(loaded.started, 'runtime').map((u) => u.split('/').pop())).toContain(
      'worker-health.ts',
    );
    expect(ofFolder(loaded.started, 'worker/generators').map((u) => u.split('/').pop())).toEqual(
      expect.not.arrayContaining(['router.ts']),
    );
    expect(hasPackage(loaded.started, 'prom-client')).toBe(false);
    expect(ofFolder(loaded.started, 'worker').length).toBeGreaterThan(0);
    // Of the relay, only the metrics token rule its health listener shares.
    expect(ofFolder(loaded.started, 'relay').map((u) => u.split('/').pop())).toEqual(['health.ts']);
    expect(ofFolder(loaded.started, 'bot')).toEqual([]);
    expect(hasPackage(loaded.started, 'fastify')).toBe(false);
    expect(hasPackage(loaded.started, 'ioredis')).toBe(false);
    expect(hasPackage(loaded.started, 'cockatiel')).toBe(false);
  });

  it('relay and worker in one process load the configured generator only, and sharp', async () => {
    const loaded = await loadedBy('all', {});
    const generators = ofFolder(loaded.started, 'worker/generators').map((u) => u.split('/').pop());
    expect(generators.sort()).toEqual(['demo.ts', 'index.ts']);
    expect(hasPackage(loaded.started, 'cockatiel')).toBe(false);
    expect(hasPackage(loaded.started, 'sharp')).toBe(true);
    expect(hasPackage(loaded.started, 'ioredis')).toBe(false);
  });

  it('GENERATORS loads the router (circuit breakers) and each adapter it names', async () => {
    const loaded = await loadedBy('all', {
      GENERATORS: JSON.stringify([
        { name: 'box', type: 'a1111', url: 'http://127.0.0.1:9' },
        { name: 'spare', type: 'demo' },
      ]),
    });
    const generators = ofFolder(loaded.started, 'worker/generators').map((u) => u.split('/').pop());
    expect(generators).toEqual(expect.arrayContaining(['router.ts', 'a1111.ts', 'demo.ts']));
    expect(generators).not.toContain('comfyui.ts');
    expect(hasPackage(loaded.started, 'cockatiel')).toBe(true);
  });
});

describe('the generator a relay names without building it', () => {
  it('is the name the generator built from the same configuration has', async () => {
    const configs = [
      {},
      { GENERATOR: 'modal', MODAL_FLUX_URL: 'https://x.modal.run' },
      {
        GENERATORS: JSON.stringify([
          { name: 'flux-box', type: 'a1111', url: 'http://gpu.local:7860' },
          { name: 'spare', type: 'demo' },
        ]),
      },
    ];
    for (const env of configs) {
      const config = loadConfig(env);
      expect(configuredGeneratorName(config)).toBe((await generatorFromConfig(config)).name);
    }
    expect(configuredGeneratorName(loadConfig(configs[2]!))).toBe('flux-box+spare');
  });
});
