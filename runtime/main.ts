/** Entry point: `npm start [all|relay|worker]`. */
import { setFlagsFromString } from 'node:v8';
import pino from 'pino';
import { ConfigError, loadConfig } from '../contracts/config.ts';
import { startImagine } from './start.ts';

// The JS heap may grow to 3× what the last full collection kept before the next one starts.
// V8 sizes that room from its own speed estimates; for this ~30 MB heap it left less room than
// its young generation may fill, so while a relay streamed images (Buffers outside the heap,
// collected when their external memory grows by 64 MB, with or without this) it started a full
// mark-compact of the whole heap every few hundred ms. `npm run bench:relay`: mark-compacts
// ~33 → ~15 per 864 images, ~1 ms of relay CPU less per 1 MiB image; the price, `npm run
// bench:cost memory`: a higher peak, and RSS after the result buffer empties 1.14–1.15 →
// 1.18–1.23× idle. Read by V8 each time it sets the limit, so set here (not on the command line)
// it holds for `npm start`, the Docker image and the benchmarks alike.
setFlagsFromString('--heap-growing-percent=200');

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

// Log lines leave asynchronously: a write to stdout (a pipe to the log shipper) never holds up
// the event loop that serves jobs. What is still buffered is written out when the process exits.
const logDestination = pino.destination({ dest: 1, sync: false });
process.once('exit', () => {
  try {
    logDestination.flushSync();
  } catch {
    // stdout is gone (closed pipe): nothing left to write to.
  }
});
const logger = pino(
  { level: config.LOG_LEVEL, base: { service: 'imagine', role: config.ROLE } },
  logDestination,
);
if (config.secretGenerated)
  logger.warn('RELAY_SECRET is not set: generated one for this run (embedded default only)');

let running: Awaited<ReturnType<typeof startImagine>>;
try {
  running = await startImagine(config, { logger });
} catch (err) {
  const e = err as NodeJS.ErrnoException;
  const why =
    e.code === 'EADDRINUSE'
      ? `port ${config.PORT} on ${config.HOST} is already in use; set PORT to another port`
      : e.code === 'EACCES'
        ? `not allowed to listen on ${config.HOST}:${config.PORT}; set PORT above 1024`
        : e.message;
  logger.fatal({ err }, 'start-up failed');
  process.stderr.write(`imagine: could not start: ${why}\n`);
  process.exit(1);
}
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
