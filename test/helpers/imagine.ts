/** Start imagine the way `npm start` does, on loopback with a random port, for tests. */
import pino from 'pino';
import { loadConfig } from '../../runtime/config.ts';
import { type Running, type StartOptions, startImagine } from '../../runtime/start.ts';

/** A secret for tests (32+ chars). */
export const TEST_SECRET = 'test-relay-secret-0123456789abcdef0123456789';

/** Start relay + worker on embedded SQS; `env` overrides configuration. */
export async function startTestImagine(
  env: Record<string, string> = {},
  opts: Partial<StartOptions> = {},
): Promise<Running & { url: string }> {
  const config = loadConfig({
    HOST: '127.0.0.1',
    PORT: '0',
    RELAY_SECRET: TEST_SECRET,
    LOG_LEVEL: 'silent',
    SQS_WAIT_SECONDS: '1',
    ...env,
  });
  const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const running = await startImagine(config, { logger, ...opts });
  return running as Running & { url: string };
}
