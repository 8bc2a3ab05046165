/**
 * What a deployment can upscale to, worked out from its generator configuration the way the
 * worker's router routes, so every front end offers and queues only upscales that will run.
 */
import { describe, expect, it } from 'vitest';
import {
  BackendListSchema,
  MODAL_FLUX_MAX_SIDE,
  upscaleMaxSide,
} from '../../contracts/backends.ts';
import { UPSCALE_MAX_SIDE, upscaleRefusal, upscaleSize } from '../../contracts/limits.ts';

const list = (specs: unknown[]) => BackendListSchema.parse(specs);

describe('upscaleMaxSide', () => {
  it('one generator: Flux on Modal stops at its own 2048; Replicate needs an upscale model', () => {
    expect(upscaleMaxSide({ GENERATOR: 'modal' })).toBe(MODAL_FLUX_MAX_SIDE);
    expect(MODAL_FLUX_MAX_SIDE).toBe(2048);
    for (const type of ['demo', 'http', 'a1111', 'comfyui'] as const)
      expect(upscaleMaxSide({ GENERATOR: type })).toBe(UPSCALE_MAX_SIDE);
    expect(upscaleMaxSide({ GENERATOR: 'replicate' })).toBe(0);
    expect(upscaleMaxSide({ GENERATOR: 'replicate', REPLICATE_UPSCALE_MODEL: 'x/esrgan:1' })).toBe(
      UPSCALE_MAX_SIDE,
    );
  });

  it('GENERATORS: the best maxSide among the backends that upscale, as the router picks', () => {
    // A modal entry keeps the default maxSide (2048), as the router checks an upscale's output.
    expect(
      upscaleMaxSide({ GENERATOR: 'demo', GENERATORS: list([{ name: 'm', type: 'modal' }]) }),
    ).toBe(2048);
    expect(
      upscaleMaxSide({
        GENERATOR: 'demo',
        GENERATORS: list([
          { name: 'm', type: 'modal' },
          { name: 'a', type: 'a1111', url: 'http://a.example', maxSide: 4096 },
        ]),
      }),
    ).toBe(4096);
    // Capped at the contract's own limit, whatever an entry says.
    expect(
      upscaleMaxSide({
        GENERATOR: 'demo',
        GENERATORS: list([{ name: 'h', type: 'http', tasks: ['upscale'], maxSide: 8192 }]),
      }),
    ).toBe(UPSCALE_MAX_SIDE);
    // None upscales: an http entry does only `generate` unless it lists more; Replicate without
    // an upscale model; a backend whose tasks leave upscale out.
    expect(
      upscaleMaxSide({
        GENERATOR: 'demo',
        GENERATORS: list([
          { name: 'h', type: 'http' },
          { name: 'r', type: 'replicate' },
          { name: 'c', type: 'comfyui', tasks: ['generate', 'vary'], maxSide: 4096 },
        ]),
      }),
    ).toBe(0);
    expect(
      upscaleMaxSide({
        GENERATOR: 'demo',
        GENERATORS: list([{ name: 'r', type: 'replicate', maxSide: 4096 }]),
        REPLICATE_UPSCALE_MODEL: 'x/esrgan:1',
      }),
    ).toBe(4096);
  });
});

describe('upscaleSize and upscaleRefusal under a deployment limit', () => {
  it('fit or say why, in words a user can act on', () => {
    expect(upscaleSize(1024, 1024, 2048)).toEqual({ width: 2048, height: 2048 });
    expect(upscaleSize(1344, 768, 2048)).toBeUndefined();
    expect(upscaleSize(2048, 2048)).toEqual({ width: 4096, height: 4096 });
    expect(upscaleSize(2048, 2048, 8192)).toEqual({ width: 4096, height: 4096 });
    expect(upscaleSize(2064, 1024, 8192)).toBeUndefined();
    expect(upscaleRefusal(1024, 1024, 2048)).toBeUndefined();
    expect(upscaleRefusal(1344, 768, 2048)).toBe(
      "this image is 1344×768; its upscale would be 2688×1536, over the 2048 pixels a side this server's image generator upscales to (images of at most 1024 a side can be upscaled)",
    );
    expect(upscaleRefusal(2064, 2064, 4096)).toMatch(
      /over the 4096 pixels a side an upscale may have/,
    );
    expect(upscaleRefusal(256, 256, 0)).toBe(
      "this server's image generator does not upscale; try a vary instead",
    );
  });
});
