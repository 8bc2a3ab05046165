/** Pick the generator named by configuration. */
import type { Config } from '../../contracts/config.ts';
import type { Generator } from '../generator.ts';
import { DemoGenerator } from './demo.ts';
import { HttpGenerator } from './http.ts';

/** The generator for a configuration. */
export function generatorFromConfig(config: Readonly<Config>): Generator {
  if (config.GENERATOR === 'demo') return new DemoGenerator();
  return new HttpGenerator({
    name: config.GENERATOR,
    url: config.MODAL_FLUX_URL!,
    modalKey: config.MODAL_KEY,
    modalSecret: config.MODAL_SECRET,
    timeoutMs: config.GENERATOR_TIMEOUT_MS,
    maxBytes: config.GENERATOR_MAX_BYTES,
  });
}
