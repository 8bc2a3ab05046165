/** Entry point: `npm start [all|relay|worker]`. */
import pino from 'pino';
import { ConfigError, loadConfig } from './config.ts';
import { startImagine } from './start.ts';

const roleArg = process.argv[2];
let config: ReturnType<typeof loadConfig>;
try {
  config = loadConfig(process.env, roleArg ? { ROLE: roleArg } : {});
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`imagine: ${err.message}\n`);
    process.exit(1);
  }
  throw err;
}

const logger = pino({ level: config.LOG_LEVEL, base: { service: 'imagine', role: config.ROLE } });
if (config.secretGenerated)
  logger.warn('RELAY_SECRET is not set: generated one for this run (embedded default only)');

const running = await startImagine(config, { logger });
if (running.url) {
  const demo = config.GENERATOR === 'demo' ? ' (demo generator: abstract art, not AI)' : '';
  process.stdout.write(`\n  imagine is running${demo}\n  open ${running.url}\n\n`);
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    logger.info({ signal }, 'shutting down');
    void running.stop().then(() => process.exit(0));
  });
}
