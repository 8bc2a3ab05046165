import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FakeA1111, startFakeA1111 } from '../fakes/a1111.ts';
import { enqueueJob } from '../helpers/enqueue.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { followJob } from '../helpers/ws.ts';

describe('choosing a model: MODELS on the submit path, GENERATORS models on the worker', () => {
  let flux: FakeA1111;
  let sdxl: FakeA1111;
  let app: Awaited<ReturnType<typeof startTestImagine>>;

  beforeAll(async () => {
    flux = await startFakeA1111();
    sdxl = await startFakeA1111();
    app = await startTestImagine({
      MODELS: 'flux1-schnell, sdxl-base',
      GENERATORS: JSON.stringify([
        { name: 'flux-box', type: 'a1111', url: flux.url, models: ['flux1-schnell'] },
        {
          name: 'sdxl-box',
          type: 'a1111',
          url: sdxl.url,
          models: ['sdxl-base', 'flux1-schnell'],
          priority: 2,
        },
      ]),
    });
  });
  afterAll(async () => {
    await app?.stop();
    await flux?.close();
    await sdxl?.close();
  });

  const post = (body: Record<string, unknown>) =>
    fetch(`${app.url}/enqueue`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'a fox', width: 64, height: 64, ...body }),
    });

  it('a job naming a model goes to a backend offering it, which gets that checkpoint', async () => {
    const { ws } = await enqueueJob(app.url, 'a fox', {
      width: 64,
      height: 64,
      model: 'sdxl-base',
    });
    const got = await followJob(ws);
    expect(got.binaries).toHaveLength(1);
    expect(flux.seen.filter((s) => s.path === '/sdapi/v1/txt2img')).toHaveLength(0);
    expect(sdxl.seen.find((s) => s.path === '/sdapi/v1/txt2img')!.body).toMatchObject({
      override_settings: { sd_model_checkpoint: 'sdxl-base' },
    });
  });

  it('a model the server does not offer is refused at once with the list, and no job is made', async () => {
    const res = await post({ model: 'midjourney-v7' });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('INVALID_PARAMETERS');
    expect(body.error.message).toContain('flux1-schnell, sdxl-base');
    expect((await post({ model: '../../etc/passwd\u0000' })).status).toBe(400);
  });

  it('/healthz lists the models for a menu', async () => {
    const health = (await (await fetch(`${app.url}/healthz`)).json()) as { models: string[] };
    expect(health.models).toEqual(['flux1-schnell', 'sdxl-base']);
  });
});

describe('choosing a model where none is offered', () => {
  it('is refused with a message saying so', async () => {
    const app = await startTestImagine();
    try {
      const res = await fetch(`${app.url}/enqueue`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'a fox', model: 'sdxl-base' }),
      });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { message: string } }).error.message).toContain(
        'offers no choice of model',
      );
    } finally {
      await app.stop();
    }
  });
});
