/** Start imagine the way `npm start` does, on loopback with a random port, for tests. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { loadConfig } from '../../contracts/config.ts';
import { type Running, type StartOptions, startImagine } from '../../runtime/start.ts';

/** A secret for tests (32+ chars). */
export const TEST_SECRET = 'test-relay-secret-0123456789abcdef0123456789';

/**
 * Start relay + worker on embedded SQS; `env` overrides configuration. Each instance gets its
 * own data directory (moderation settings), removed on stop, unless `env.DATA_DIR` is given.
 */
export async function startTestImagine(
  env: Record<string, string> = {},
  opts: Partial<StartOptions> = {},
): Promise<Running & { url: string }> {
  const ownDataDir = env.DATA_DIR ? undefined : mkdtempSync(join(tmpdir(), 'imagine-test-'));
  const config = loadConfig({
    ...(ownDataDir ? { DATA_DIR: ownDataDir } : {}),
    HOST: '127.0.0.1',
    PORT: '0',
    RELAY_SECRET: TEST_SECRET,
    LOG_LEVEL: 'silent',
    SQS_WAIT_SECONDS: '1',
    // Output safety is tested on its own (test/worker/safety.test.ts); elsewhere images are not
    // judged, so the model is not loaded into every test's process.
    SAFETY: 'off',
    ...env,
  });
  const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const running = await startImagine(config, { logger, ...opts });
  const stop = running.stop;
  running.stop = async () => {
    await stop();
    if (ownDataDir) rmSync(ownDataDir, { recursive: true, force: true });
  };
  return running as Running & { url: string };
}
