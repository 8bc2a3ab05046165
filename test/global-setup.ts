/**
 * Starts the real services tests need: a Redis server on a free loopback port (when
 * `redis-server` is installed; `.ci/run` installs it). Tests read its URL with
 * `inject('redisUrl')`. Builds the web page once, before any test file runs, so the browser
 * tests (which run in parallel) see the current source and no build swaps it under them.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { buildWebPreview } from '../web-preview/build.ts';
import { freePort } from './helpers/net.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

let redis: ChildProcess | undefined;
let dir: string | undefined;

export async function setup(project: TestProject): Promise<void> {
  await buildWebPreview();
  const which = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  const bin = which.stdout.trim();
  if (!bin) {
    throw new Error(
      'redis-server is not installed; .ci/run installs it (apt-get install redis-server)',
    );
  }
  const port = await freePort();
  dir = mkdtempSync(join(tmpdir(), 'imagine-redis-'));
  redis = spawn(
    bin,
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      dir,
    ],
    {
      stdio: 'ignore',
    },
  );
  const url = `redis://127.0.0.1:${port}`;
  const { Redis } = await import('ioredis');
  const deadline = Date.now() + 10_000;
  for (;;) {
    const client = new Redis(url, {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    try {
      await client.connect();
      await client.ping();
      client.disconnect();
      break;
    } catch (err) {
      client.disconnect();
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  project.provide('redisUrl', url);
}

export async function teardown(): Promise<void> {
  redis?.kill('SIGTERM');
  if (dir) rmSync(dir, { recursive: true, force: true });
}
