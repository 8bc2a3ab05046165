import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../contracts/config.ts';
import { ImagineError, isRetryable } from '../../contracts/errors.ts';
import type { GeneratedImage, GenerateRequest, Generator } from '../../worker/generator.ts';
import { DemoGenerator } from '../../worker/generators/demo.ts';
import { GeneratorRouter, type RoutedBackend } from '../../worker/generators/router.ts';

const request: GenerateRequest = {
  task: 'generate',
  prompt: 'p',
  width: 64,
  height: 64,
  seeds: [1],
  steps: 1,
};
const live = () => ({ signal: new AbortController().signal });

/** A backend that fails with `failWith` while set, else makes a demo image. */
class Scripted implements Generator {
  readonly name: string;
  calls = 0;
  failWith: ImagineError | undefined;
  private readonly demo = new DemoGenerator();
  constructor(name: string) {
    this.name = name;
  }
  async generate(req: GenerateRequest, opts: { signal: AbortSignal }): Promise<GeneratedImage[]> {
    this.calls++;
    if (this.failWith) throw this.failWith;
    return this.demo.generate(req, opts);
  }
}

function backend(generator: Scripted, over: Partial<RoutedBackend> = {}): RoutedBackend {
  return {
    name: generator.name,
    type: 'a1111',
    generator,
    priority: 1,
    weight: 1,
    tasks: ['generate', 'vary', 'upscale'],
    maxSide: 2048,
    maxCount: 4,
    ...over,
  };
}

const unavailable = () => new ImagineError('GENERATOR_UNAVAILABLE', 'connection refused');

describe('generator router: several backends, circuit breakers, failover', () => {
  it('lowest priority first; the next only when it fails with a retryable error', async () => {
    const a = new Scripted('a');
    const b = new Scripted('b');
    const router = new GeneratorRouter({
      backends: [backend(b, { priority: 2 }), backend(a, { priority: 1 })],
      failuresToOpen: 1,
      cooldownMs: 60_000,
    });
    await router.generate(request, live());
    expect([a.calls, b.calls]).toEqual([1, 0]);
    a.failWith = unavailable();
    await router.generate(request, live());
    expect([a.calls, b.calls]).toEqual([2, 1]);
    // a is unhealthy now: skipped without a call until its cool-down is over.
    await router.generate(request, live());
    expect([a.calls, b.calls]).toEqual([2, 2]);
    const sa = router.status().find((s) => s.name === 'a');
    const sb = router.status().find((s) => s.name === 'b');
    expect(sa).toMatchObject({
      name: 'a',
      state: 'unhealthy',
      failures: 1,
      lastError: 'GENERATOR_UNAVAILABLE',
    });
    expect(sa!.retryAt).toBeGreaterThan(Date.now());
    expect(sb).toMatchObject({ name: 'b', state: 'healthy', calls: 2 });
    expect(sb!.latencyMs!.last).toBeGreaterThanOrEqual(0);
  });

  it('a non-retryable failure ends the job at once: no other backend is tried', async () => {
    const a = new Scripted('a');
    const b = new Scripted('b');
    a.failWith = new ImagineError('GENERATOR_REJECTED', 'workflow does not validate');
    const router = new GeneratorRouter({
      backends: [backend(a, { priority: 1 }), backend(b, { priority: 2 })],
      failuresToOpen: 1,
      cooldownMs: 60_000,
    });
    await expect(router.generate(request, live())).rejects.toMatchObject({
      code: 'GENERATOR_REJECTED',
    });
    expect(b.calls).toBe(0);
    expect(router.status()[0]!.state).toBe('healthy');
  });

  it('a backend with wrong credentials does not take the service down: the next one serves', async () => {
    const a = new Scripted('a');
    const b = new Scripted('b');
    a.failWith = new ImagineError('GENERATOR_AUTH', 'wrong password');
    const router = new GeneratorRouter({
      backends: [backend(a, { priority: 1 }), backend(b, { priority: 2 })],
      failuresToOpen: 1,
      cooldownMs: 60_000,
    });
    await router.generate(request, live());
    await router.generate(request, live());
    expect([a.calls, b.calls]).toEqual([1, 2]);
    expect(router.status()[0]).toMatchObject({ state: 'unhealthy', lastError: 'GENERATOR_AUTH' });
    // Alone, its failure is the job's answer (not retried: the password will not fix itself).
    b.failWith = new ImagineError('GENERATOR_AUTH', 'also wrong');
    const solo = new GeneratorRouter({
      backends: [backend(b)],
      failuresToOpen: 1,
      cooldownMs: 60_000,
    });
    const err = await solo.generate(request, live()).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'GENERATOR_AUTH' });
    expect(isRetryable(err)).toBe(false);
  });

  it('a retryable failure wins over a misconfigured backend: the job goes back to the queue', async () => {
    const a = new Scripted('a');
    const b = new Scripted('b');
    a.failWith = new ImagineError('GENERATOR_AUTH', 'wrong password');
    b.failWith = unavailable();
    const router = new GeneratorRouter({
      backends: [backend(a, { priority: 1 }), backend(b, { priority: 2 })],
      failuresToOpen: 1,
      cooldownMs: 60_000,
    });
    const err = await router.generate(request, live()).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'GENERATOR_UNAVAILABLE' });
  });

  it('when every backend failed, the last retryable error goes back to the queue', async () => {
    const a = new Scripted('a');
    const b = new Scripted('b');
    a.failWith = unavailable();
    b.failWith = new ImagineError('GENERATOR_TIMEOUT', 'slow');
    const router = new GeneratorRouter({
      backends: [backend(a), backend(b)],
      failuresToOpen: 1,
      cooldownMs: 60_000,
    });
    const err = await router.generate(request, live()).catch((e: unknown) => e);
    expect(isRetryable(err)).toBe(true);
    // Both are open now: the next job fails at once, retryable, saying when to come back.
    const next = (await router.generate(request, live()).catch((e: unknown) => e)) as ImagineError;
    expect(next.code).toBe('GENERATOR_UNAVAILABLE');
    expect(next.retryAfterSeconds).toBeGreaterThan(0);
    expect(a.calls + b.calls).toBe(2);
  });

  it('an unhealthy backend gets one trial call after its cool-down and is healthy again', async () => {
    const a = new Scripted('a');
    const b = new Scripted('b');
    const router = new GeneratorRouter({
      backends: [backend(a, { priority: 1 }), backend(b, { priority: 2 })],
      failuresToOpen: 1,
      cooldownMs: 50,
    });
    a.failWith = unavailable();
    await router.generate(request, live());
    expect(router.status()[0]!.state).toBe('unhealthy');
    a.failWith = undefined;
    await expect
      .poll(async () => {
        await router.generate(request, live());
        return router.status()[0]!.state;
      })
      .toBe('healthy');
    const before = a.calls;
    await router.generate(request, live());
    expect(a.calls).toBe(before + 1);
  });

  it('a job goes only to backends that can do it: task, size, count and model', async () => {
    const small = new Scripted('small');
    const big = new Scripted('big');
    const router = new GeneratorRouter({
      backends: [
        backend(small, { priority: 1, maxSide: 512, tasks: ['generate'], models: ['sdxl'] }),
        backend(big, { priority: 2, maxSide: 2048, models: ['flux-schnell', 'sdxl'] }),
      ],
      failuresToOpen: 1,
      cooldownMs: 60_000,
    });
    await router.generate({ ...request, width: 1024, height: 1024 }, live());
    expect([small.calls, big.calls]).toEqual([0, 1]);
    await router.generate({ ...request, model: 'flux-schnell' }, live());
    expect([small.calls, big.calls]).toEqual([0, 2]);
    await router.generate({ ...request, model: 'sdxl' }, live());
    expect([small.calls, big.calls]).toEqual([1, 2]);
    await expect(router.generate({ ...request, model: 'nope' }, live())).rejects.toMatchObject({
      code: 'GENERATOR_REJECTED',
    });
    const input = {
      bytes: await sharp({ create: { width: 64, height: 64, channels: 3, background: '#123' } })
        .png()
        .toBuffer(),
      contentType: 'image/png' as const,
      width: 64,
      height: 64,
    };
    await router.generate(
      { ...request, task: 'vary', input, strength: 0.5, model: 'sdxl' },
      live(),
    );
    expect([small.calls, big.calls]).toEqual([1, 3]);
    await expect(
      router.generate({ ...request, seeds: [1, 2, 3, 4, 5] }, live()),
    ).rejects.toMatchObject({ code: 'GENERATOR_REJECTED' });
    await expect(router.generate({ ...request, width: 4096 }, live())).rejects.toMatchObject({
      code: 'GENERATOR_REJECTED',
    });
  });

  it('weights share jobs among backends of one priority', async () => {
    const a = new Scripted('a');
    const b = new Scripted('b');
    let r = 0;
    const sequence = [0.1, 0.5, 0.9, 0.2, 0.8, 0.05, 0.95, 0.7];
    const router = new GeneratorRouter({
      backends: [backend(a, { weight: 3 }), backend(b, { weight: 1 })],
      failuresToOpen: 1,
      cooldownMs: 60_000,
      random: () => sequence[r++ % sequence.length]!,
    });
    for (let i = 0; i < 8; i++) await router.generate(request, live());
    // a holds [0, 0.75) of the range, b [0.75, 1): 0.9, 0.8, 0.95 pick b.
    expect([a.calls, b.calls]).toEqual([5, 3]);
  });

  it('an aborted job is not counted against the backend', async () => {
    const a = new Scripted('a');
    const router = new GeneratorRouter({
      backends: [backend(a)],
      failuresToOpen: 1,
      cooldownMs: 60_000,
    });
    const ac = new AbortController();
    ac.abort(new Error('cancelled'));
    await expect(router.generate(request, { signal: ac.signal })).rejects.toThrow('cancelled');
    expect(router.status()[0]).toMatchObject({ state: 'healthy', failures: 0 });
  });

  it('GENERATORS is validated by the configuration schema, naming the entry', () => {
    expect(() => loadConfig({ GENERATORS: 'not json' })).toThrow(/GENERATORS.*JSON array/);
    expect(() => loadConfig({ GENERATORS: '[]' })).toThrow(/GENERATORS/);
    expect(() =>
      loadConfig({ GENERATORS: JSON.stringify([{ name: 'gpu', type: 'a1111' }]) }),
    ).toThrow(/GENERATORS\[0\] \(gpu\): type a1111 needs "url"/);
    expect(() =>
      loadConfig({
        GENERATORS: JSON.stringify([
          { name: 'gpu', type: 'demo' },
          { name: 'gpu', type: 'demo' },
        ]),
      }),
    ).toThrow(/used twice/);
    expect(() =>
      loadConfig({ GENERATORS: JSON.stringify([{ name: 'gpu', type: 'demo', colour: 'red' }]) }),
    ).toThrow(/GENERATORS/);
    const config = loadConfig({
      GENERATORS: JSON.stringify([
        { name: 'gpu', type: 'a1111', url: 'http://gpu:7860', priority: 2 },
      ]),
    });
    expect(config.GENERATORS![0]).toMatchObject({
      name: 'gpu',
      priority: 2,
      weight: 1,
      maxCount: 4,
    });
  });
});
