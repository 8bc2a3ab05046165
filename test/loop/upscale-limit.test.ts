/**
 * An upscale the deployment's generator cannot make is refused at submit, with a message that
 * says why, before anything is queued: on GENERATOR=modal the Flux app's img2img stops at 2048
 * a side (worker/modal/flux_core.py), below the contract's 4096. `/healthz` says the limit, so
 * the page offers only upscales that will run.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GeneratedImage, GenerateRequest, Generator } from '../../worker/generator.ts';
import { DemoGenerator } from '../../worker/generators/demo.ts';
import { pngOf } from '../helpers/images.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { followJob } from '../helpers/ws.ts';

class RecordingGenerator implements Generator {
  readonly name = 'modal';
  readonly calls: GenerateRequest[] = [];
  private readonly demo = new DemoGenerator();
  generate(req: GenerateRequest, opts: { signal: AbortSignal }): Promise<GeneratedImage[]> {
    this.calls.push(req);
    return this.demo.generate(req, opts);
  }
}

describe('GENERATOR=modal: upscales past the Flux app’s 2048 are refused before queueing', () => {
  const generator = new RecordingGenerator();
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  let cdn: Server;
  let cdnBase: string;

  beforeAll(async () => {
    const source = await pngOf(1024, 1024, { r: 20, g: 120, b: 220 });
    cdn = createServer((_req, res) =>
      res.writeHead(200, { 'content-type': 'image/png' }).end(source),
    );
    await new Promise<void>((resolve) => cdn.listen(0, '127.0.0.1', resolve));
    cdnBase = `http://127.0.0.1:${(cdn.address() as AddressInfo).port}`;
    app = await startTestImagine(
      {
        GENERATOR: 'modal',
        // Never called: the worker runs the recording generator; the relay reads the choice.
        MODAL_FLUX_URL: 'http://127.0.0.1:9/',
        INPUT_IMAGE_HOSTS: new URL(cdnBase).host,
        INPUT_IMAGE_ALLOW_HTTP: 'true',
      },
      { generator },
    );
  });
  afterAll(async () => {
    await app?.stop();
    cdn?.close();
  });

  const upscale = (width: number, height: number) =>
    fetch(`${app.url}/enqueue`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        prompt: 'the same, sharper',
        task: 'upscale',
        input: { image: { kind: 'url', url: `${cdnBase}/a.png` }, width, height, seed: 3 },
      }),
    });

  it('/healthz says what an upscale may make here', async () => {
    const health = (await (await fetch(`${app.url}/healthz`)).json()) as Record<string, unknown>;
    expect(health).toMatchObject({ generator: 'modal', maxImageSide: 2048, upscaleMaxSide: 2048 });
  });

  it('a 2048² or 1344×768 image: 400 INVALID_PARAMETERS saying why, and no job', async () => {
    for (const [w, h] of [
      [2048, 2048],
      [1344, 768],
      [1040, 1024],
    ] as const) {
      const res = await upscale(w, h);
      expect(res.status).toBe(400);
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('INVALID_PARAMETERS');
      expect(body.error.message).toBe(
        `this image is ${w}×${h}; its upscale would be ${w * 2}×${h * 2}, over the 2048 pixels a side this server's image generator upscales to (images of at most 1024 a side can be upscaled)`,
      );
    }
    expect(app.relay!.relay.tracker.queuedCount).toBe(0);
    expect(generator.calls).toHaveLength(0);
  });

  it('a 1024² image is queued and upscaled to 2048²', async () => {
    const res = await upscale(1024, 1024);
    expect(res.status).toBe(202);
    const job = (await res.json()) as { ws: string; width: number; height: number };
    expect([job.width, job.height]).toEqual([2048, 2048]);
    const got = await followJob(job.ws);
    expect(got.binaries).toHaveLength(1);
    expect(generator.calls.at(-1)).toMatchObject({ task: 'upscale', width: 2048, height: 2048 });
  });
});
