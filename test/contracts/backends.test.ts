/**
 * What a deployment can upscale to, worked out from its generator configuration the way the
 * worker's router routes, so every front end offers and queues only upscales that will run.
 */
import { describe, expect, it } from 'vitest';
import {
  BackendListSchema,
  backendCapability,
  canServe,
  demandRefusal,
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

describe('demandRefusal: a job no backend of GENERATORS takes, said before queueing', () => {
  const backends = list([
    {
      name: 'sdxl',
      type: 'a1111',
      url: 'http://gpu:7860',
      maxSide: 1024,
      maxCount: 4,
      models: ['sdxl'],
    },
    {
      name: 'big',
      type: 'comfyui',
      url: 'http://gpu:8188',
      maxSide: 2048,
      maxCount: 1,
      tasks: ['generate'],
    },
  ]).map((spec) => backendCapability(spec, {}));
  const job = { task: 'generate', count: 1, width: 1024, height: 1024 } as const;

  it('takes what one backend can do, as the router would', () => {
    expect(demandRefusal(backends, job)).toBeUndefined();
    expect(demandRefusal(backends, { ...job, width: 2048, height: 1152 })).toBeUndefined();
    expect(demandRefusal(backends, { ...job, count: 4, model: 'sdxl' })).toBeUndefined();
    for (const d of [job, { ...job, task: 'vary' as const, count: 4 }])
      expect(backends.some((b) => canServe(b, d))).toBe(demandRefusal(backends, d) === undefined);
  });

  it('says which limit a refused job is over', () => {
    expect(demandRefusal(backends, { ...job, width: 4096 })).toBe(
      "this server's image generators make at most 2048 pixels a side; a 4096×1024 generate is too big",
    );
    expect(demandRefusal(backends, { ...job, count: 8 })).toBe(
      "this server's image generators make at most 4 images at once; ask for fewer",
    );
    // Each limit is met by one backend, but no one backend meets both.
    expect(demandRefusal(backends, { ...job, width: 2048, count: 2 })).toBe(
      'no one image generator here makes a 2048×1024 generate of 2 images; ask for fewer or smaller images',
    );
    expect(demandRefusal(backends, { ...job, model: 'flux-dev' })).toBe(
      "this server's image generators offer no model flux-dev for a 1024×1024 generate",
    );
    const generateOnly = backends.filter((b) => !b.tasks.includes('vary'));
    expect(demandRefusal(generateOnly, { ...job, task: 'vary' })).toBe(
      "this server's image generators do not vary",
    );
  });
});
