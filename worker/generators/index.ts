/** Pick the generator named by configuration. */
import type { Config } from '../../contracts/config.ts';
import type { Generator } from '../generator.ts';
import { A1111Generator } from './a1111.ts';
import { DemoGenerator } from './demo.ts';
import { HttpGenerator } from './http.ts';

/** Strength of a vary when the request gives none (A1111 `denoising_strength`, ComfyUI `denoise`). */
export const DEFAULT_VARY_STRENGTH = 0.6;

/** The generator for a configuration. */
export function generatorFromConfig(config: Readonly<Config>): Generator {
  if (config.GENERATOR === 'demo') return new DemoGenerator();
  if (config.GENERATOR === 'a1111')
    return new A1111Generator({
      name: 'a1111',
      url: config.A1111_URL!,
      auth: config.A1111_AUTH,
      model: config.A1111_MODEL,
      sampler: config.A1111_SAMPLER,
      scheduler: config.A1111_SCHEDULER,
      cfgScale: config.A1111_CFG_SCALE,
      upscaler: config.A1111_UPSCALER,
      varyStrength: DEFAULT_VARY_STRENGTH,
      timeoutMs: config.GENERATOR_TIMEOUT_MS,
      maxBytes: config.GENERATOR_MAX_BYTES,
    });
  return new HttpGenerator({
    name: config.GENERATOR,
    url: config.MODAL_FLUX_URL!,
    modalKey: config.MODAL_KEY,
    modalSecret: config.MODAL_SECRET,
    timeoutMs: config.GENERATOR_TIMEOUT_MS,
    maxBytes: config.GENERATOR_MAX_BYTES,
  });
}
