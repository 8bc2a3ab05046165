import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { Job } from '../../contracts/job.ts';
import type { GenerateOptions, Generator } from '../../worker/generator.ts';
import { DemoGenerator } from '../../worker/generators/demo.ts';
import type { RelayPusher } from '../../worker/push-client.ts';
import { createJobRunner } from '../../worker/runner.ts';
import { webJob } from '../helpers/jobs.ts';

const jobOf = (count: number): Job => webJob('previews asked for', count);

/** The demo generator, recording what the worker says of each step's preview. */
function recording(): Generator & { answers: Array<[number, number, boolean]> } {
  const demo = new DemoGenerator();
  const answers: Array<[number, number, boolean]> = [];
  return {
    name: 'demo',
    answers,
    generate: (req, opts: GenerateOptions) =>
      demo.generate(req, {
        ...opts,
        wantsPreview: (step, steps) => {
          const yes = opts.wantsPreview?.(step, steps) ?? true;
          answers.push([step, steps, yes]);
          return yes;
        },
      }),
  };
}

const pusher: RelayPusher = { push: async () => ({ duplicate: false }) };

describe('the worker tells the generator which previews it would use', () => {
  it('none for the last step: the result follows at once', async () => {
    for (const count of [1, 3]) {
      const generator = recording();
      const run = createJobRunner({
        generator,
        pusher,
        logger: pino({ level: 'silent' }),
        maxAttempts: 3,
        progress: { intervalMs: 250, pollMs: 0 },
      });
      await run(jobOf(count), { signal: new AbortController().signal, attempt: 1 });
      const steps = Array.from({ length: count }, (_, i) => [i + 1, count, i + 1 < count]);
      expect(generator.answers).toEqual(steps);
    }
  });
});
