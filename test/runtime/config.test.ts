import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, ENV, loadConfig } from '../../contracts/config.ts';

describe('configuration', () => {
  it('runs on embedded defaults with a generated secret', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      embedded: true,
      secretGenerated: true,
      PORT: 8080,
      HOST: '0.0.0.0',
      GENERATOR: 'demo',
    });
    expect(config.RELAY_SECRET.length).toBeGreaterThanOrEqual(32);
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('gives the demo 4 job slots and a GPU backend 2, unless WORKER_CONCURRENCY says', () => {
    const modal = { GENERATOR: 'modal', MODAL_FLUX_URL: 'https://x.modal.run' };
    expect(loadConfig({}).WORKER_CONCURRENCY).toBe(4);
    expect(loadConfig(modal).WORKER_CONCURRENCY).toBe(2);
    expect(loadConfig({ ...modal, WORKER_CONCURRENCY: '7' }).WORKER_CONCURRENCY).toBe(7);
    expect(loadConfig({ WORKER_CONCURRENCY: '1' }).WORKER_CONCURRENCY).toBe(1);
    const demo = { name: 'd', type: 'demo' };
    const gpu = { name: 'g', type: 'a1111', url: 'http://gpu.local:7860' };
    expect(loadConfig({ GENERATORS: JSON.stringify([demo]) }).WORKER_CONCURRENCY).toBe(4);
    expect(loadConfig({ GENERATORS: JSON.stringify([demo, gpu]) }).WORKER_CONCURRENCY).toBe(2);
    expect(() => loadConfig({ WORKER_CONCURRENCY: '0' })).toThrow(/^ {2}WORKER_CONCURRENCY=/m);
  });

  it('names each bad variable and what was expected', () => {
    try {
      loadConfig({ PORT: 'eighty', GENERATOR: 'dalle', RELAY_SECRET: 'short' });
      throw new Error('expected a ConfigError');
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      const problems = (err as ConfigError).problems.join('\n');
      expect(problems).toMatch(/^PORT=/m);
      expect(problems).toMatch(/^GENERATOR=/m);
      expect(problems).toMatch(/^RELAY_SECRET=.*32/m);
    }
  });

  it('requires RELAY_SECRET with a real queue, and a URL for the modal generator', () => {
    expect(() => loadConfig({ SQS_QUEUE_URL: 'https://sqs.us-east-1.amazonaws.com/1/q' })).toThrow(
      /RELAY_SECRET/,
    );
    expect(() => loadConfig({ GENERATOR: 'modal' })).toThrow(/MODAL_FLUX_URL/);
  });

  it('stops `npm start` with a clear message instead of a stack trace', () => {
    const out = spawnSync(process.execPath, ['runtime/main.ts'], {
      env: { ...process.env, PORT: '-1' },
      encoding: 'utf8',
    });
    expect(out.status).toBe(1);
    expect(out.stderr).toMatch(/imagine: invalid configuration:\n\s+PORT="-1"/);
    expect(out.stderr).not.toMatch(/at .*\.ts:\d+/);
  });

  it('documents every variable in README', async () => {
    const { readFile } = await import('node:fs/promises');
    const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
    for (const key of Object.keys(ENV)) expect(readme, key).toContain(`\`${key}\``);
    // The table is the generated one, word for word (`npm run docs:config`).
    const { configTable } = await import('../../runtime/config-doc.ts');
    expect(readme).toContain(configTable());
  });
});

describe('start-up failure', () => {
  it('stops what had started when a later part fails', async () => {
    const { startTestImagine } = await import('../helpers/imagine.ts');
    const { connect } = await import('node:net');
    const { freePort } = await import('../helpers/net.ts');
    const port = await freePort();
    const stopped: string[] = [];
    await expect(
      startTestImagine(
        { PORT: String(port) },
        {
          adapters: [
            { name: 'first', start: async () => {}, stop: async () => void stopped.push('first') },
            {
              name: 'broken',
              start: async () => {
                throw new Error('bad token');
              },
            },
          ],
        },
      ),
    ).rejects.toThrow('bad token');
    expect(stopped).toEqual(['first']);
    // The relay that was listening is closed again.
    const refused = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(false);
      });
      socket.once('error', () => resolve(true));
    });
    expect(refused).toBe(true);
  });
});

describe('npm start on a busy port', () => {
  it('says the port is in use and exits 1, without a stack trace', async () => {
    const { createServer } = await import('node:net');
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    const port = (blocker.address() as { port: number }).port;
    try {
      const out = spawnSync(process.execPath, ['runtime/main.ts'], {
        env: {
          ...process.env,
          HOST: '127.0.0.1',
          PORT: String(port),
          LOG_LEVEL: 'fatal',
          DATA_DIR: join(tmpdir(), 'imagine-test-busy-port'),
        },
        encoding: 'utf8',
        timeout: 20_000,
      });
      expect(out.status).toBe(1);
      expect(out.stderr).toContain(`port ${port} on 127.0.0.1 is already in use`);
      expect(out.stderr).not.toMatch(/at .*\.ts:\d+/);
      // Logging is asynchronous; the line logged just before process.exit(1) is still written.
      const lines = out.stdout.split('\n').filter((l) => l.startsWith('{'));
      expect(lines.map((l) => (JSON.parse(l) as { msg: string }).msg)).toContain('start-up failed');
    } finally {
      blocker.close();
    }
  });
});
