/**
 * Vary and upscale through the whole pipeline: the input image is fetched by the worker from an
 * allow-listed loopback "CDN" and reaches the generator; refusals are a 400 at submit or a
 * coded failure the user sees.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VARY_STRENGTHS } from '../../contracts/job.ts';
import type { GeneratedImage, GenerateRequest, Generator } from '../../worker/generator.ts';
import { DemoGenerator } from '../../worker/generators/demo.ts';
import { enqueueJob } from '../helpers/enqueue.ts';
import { pngOf } from '../helpers/images.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { followJob } from '../helpers/ws.ts';

class RecordingGenerator implements Generator {
  readonly name = 'demo';
  readonly calls: GenerateRequest[] = [];
  private readonly demo = new DemoGenerator();
  generate(req: GenerateRequest, opts: { signal: AbortSignal }): Promise<GeneratedImage[]> {
    this.calls.push(req);
    return this.demo.generate(req, opts);
  }
}

describe('vary and upscale with an input image', () => {
  const generator = new RecordingGenerator();
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  let cdn: Server;
  let cdnBase: string;
  let source: Buffer;

  beforeAll(async () => {
    source = await pngOf(128, 96, { r: 20, g: 120, b: 220 });
    cdn = createServer((req, res) => {
      if (req.url === '/attachments/1/2/source.png')
        res.writeHead(200, { 'content-type': 'image/png' }).end(source);
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => cdn.listen(0, '127.0.0.1', resolve));
    cdnBase = `http://127.0.0.1:${(cdn.address() as AddressInfo).port}`;
    app = await startTestImagine(
      { INPUT_IMAGE_HOSTS: new URL(cdnBase).host, INPUT_IMAGE_ALLOW_HTTP: 'true' },
      { generator },
    );
  });
  afterAll(async () => {
    await app?.stop();
    cdn?.close();
  });

  const input = (path = '/attachments/1/2/source.png') => ({
    image: { kind: 'url', url: `${cdnBase}${path}` },
    width: 128,
    height: 96,
    seed: 5,
    index: 1,
  });

  it('V: the input reaches the generator, and each varied image is a visible change of it', async () => {
    const job = await enqueueJob(app.url, 'the same, but at night', {
      input: input(),
      count: 2,
      strength: 'subtle',
    });
    const got = await followJob(job.ws);
    const call = generator.calls.at(-1)!;
    expect(call).toMatchObject({
      task: 'vary',
      strength: VARY_STRENGTHS.subtle,
      width: 128,
      height: 96,
    });
    expect(call.seeds).toHaveLength(2);
    const seen = await sharp(call.input!.bytes).raw().toBuffer({ resolveWithObject: true });
    expect([seen.info.width, seen.info.height]).toEqual([128, 96]);
    expect([...seen.data.subarray(0, 3)]).toEqual([20, 120, 220]);
    expect(got.binaries).toHaveLength(2);
    for (const bytes of got.binaries) {
      const out = await sharp(bytes).raw().toBuffer({ resolveWithObject: true });
      expect([out.info.width, out.info.height]).toEqual([128, 96]);
      expect(out.data.equals(seen.data)).toBe(false);
    }
    expect(got.texts.find((t) => t.type === 'image')).toMatchObject({ task: 'vary' });
  });

  it('U: one image at twice the size, from the source seed', async () => {
    const job = await enqueueJob(app.url, 'the same, sharper', { task: 'upscale', input: input() });
    const got = await followJob(job.ws);
    expect(generator.calls.at(-1)).toMatchObject({
      task: 'upscale',
      seeds: [5],
      width: 256,
      height: 192,
    });
    expect(got.binaries).toHaveLength(1);
    const meta = await sharp(got.binaries[0]!).metadata();
    expect([meta.width, meta.height]).toEqual([256, 192]);
  });

  it('an input on a host not on the list is a 400 at submit, and no job', async () => {
    const calls = generator.calls.length;
    const res = await fetch(`${app.url}/enqueue`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        prompt: 'x',
        input: { image: { kind: 'url', url: 'https://evil.example.com/a.png' } },
      }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe(
      'INPUT_NOT_ALLOWED',
    );
    expect(app.relay!.relay.tracker.queuedCount).toBe(0);
    expect(generator.calls.length).toBe(calls);
  });

  it('an input gone from its host ends the job as failed, saying so', async () => {
    const job = await enqueueJob(app.url, 'from a deleted message', {
      input: input('/deleted.png'),
    });
    const got = await followJob(job.ws);
    const last = got.texts.at(-1)!;
    expect(last).toMatchObject({ state: 'failed', error: { code: 'INPUT_NOT_FOUND' } });
    expect(got.binaries).toHaveLength(0);
  });
});
