/**
 * The creative loop end to end on Discord: the real gateway client, relay, queue, worker and
 * demo generator against the fake Discord (and its CDN).
 */
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GeneratedImage, GenerateRequest, Generator } from '../../worker/generator.ts';
import { DemoGenerator } from '../../worker/generators/demo.ts';
import { customIdsOf, inputHosts, isImageEdit } from '../fakes/discord/harness.ts';
import { type FakeDiscord, startFakeDiscord } from '../fakes/discord/server.ts';
import { startTestImagine } from '../helpers/imagine.ts';

type Imagine = Awaited<ReturnType<typeof startTestImagine>>;

/** Which of `candidates` an image is (the nearest in pixels at 32×32: the worker re-encodes inputs). */
async function nearest(image: Buffer, candidates: Buffer[]): Promise<number> {
  const pixels = (b: Buffer) =>
    sharp(b).resize(32, 32, { fit: 'fill' }).removeAlpha().raw().toBuffer();
  const target = await pixels(image);
  let best = -1;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const [i, c] of candidates.entries()) {
    const p = await pixels(c);
    let d = 0;
    for (let k = 0; k < p.length; k++) d += Math.abs(p[k]! - target[k]!);
    if (d < bestDistance) [best, bestDistance] = [i, d];
  }
  return best;
}

/** The demo generator, remembering what each call was asked (task, strength, input bytes). */
class RecordingGenerator implements Generator {
  readonly name = 'demo';
  readonly calls: GenerateRequest[] = [];
  private readonly inner = new DemoGenerator();
  generate(req: GenerateRequest, opts: { signal: AbortSignal }): Promise<GeneratedImage[]> {
    this.calls.push(req);
    return this.inner.generate(req, opts);
  }
}

describe('Discord creative loop end to end', () => {
  let fake: FakeDiscord;
  let app: Imagine;
  const generator = new RecordingGenerator();
  const env = () => ({
    DISCORD_TOKEN: fake.botToken,
    DISCORD_API_URL: fake.apiUrl,
    ...inputHosts(fake),
  });

  beforeAll(async () => {
    fake = await startFakeDiscord();
    app = await startTestImagine(env(), { generator });
  });
  afterAll(async () => {
    await app?.stop();
    await fake?.close();
  });

  it('/imagine count:4 reaches Discord as 4 attachments in one edit, one seed each', async () => {
    const interaction = fake.commandInteraction({ prompt: 'four lanterns', seed: 100, count: 4 });
    fake.dispatch(interaction);
    const final = await fake.waitFor(isImageEdit(interaction.token));
    expect(fake.find(isImageEdit(interaction.token))).toHaveLength(1);
    expect(final.files.map((f) => f.filename)).toEqual([
      'imagine-100.png',
      'imagine-101.png',
      'imagine-102.png',
      'imagine-103.png',
    ]);
    const sizes = await Promise.all(
      final.files.map(async (f) => {
        const m = await sharp(f.bytes).metadata();
        return `${m.width}x${m.height}`;
      }),
    );
    expect(sizes).toEqual(Array(4).fill('1024x1024'));
    // Four different images, not one copied.
    expect(new Set(final.files.map((f) => f.bytes.toString('base64'))).size).toBe(4);
    expect(customIdsOf(final.body).slice(0, 4)).toEqual([
      'up|0|100|1024x1024',
      'up|1|101|1024x1024',
      'up|2|102|1024x1024',
      'up|3|103|1024x1024',
    ]);
    expect(fake.original(interaction.token)?.attachments).toHaveLength(4);
  });

  it('U2 and V3 work after the whole process restarts: the generator gets that attachment', async () => {
    const interaction = fake.commandInteraction({ prompt: 'pick one', seed: 300, count: 4 });
    fake.dispatch(interaction);
    const grid = await fake.waitFor(isImageEdit(interaction.token));
    const message = fake.original(interaction.token)!;

    // Relay, worker, adapter and gateway session all start again; nothing was kept.
    await app.stop();
    app = await startTestImagine(env(), { generator });

    const u2 = fake.buttonInteraction(message, 'up|1|301|1024x1024');
    fake.dispatch(u2);
    const upscaled = await fake.waitFor(isImageEdit(u2.token));
    const upCall = generator.calls.at(-1)!;
    expect(upCall).toMatchObject({ task: 'upscale', seeds: [301], width: 2048, height: 2048 });
    const gridBytes = grid.files.map((f) => f.bytes);
    expect(await nearest(upCall.input!.bytes, gridBytes)).toBe(1);
    expect(upscaled.files).toHaveLength(1);
    const meta = await sharp(upscaled.files[0]!.bytes).metadata();
    expect([meta.width, meta.height]).toEqual([2048, 2048]);
    // An upscaled image offers Vary and a further upscale (4096 still fits).
    expect(customIdsOf(upscaled.body)).toEqual([
      'up|0|301|2048x2048',
      'vy|0|301|2048x2048|subtle',
      'vy|0|301|2048x2048|strong',
    ]);
    expect(fake.cdnRequests.at(-1)).toMatchObject({ status: 200 });

    const v3 = fake.buttonInteraction(message, 'vy|2|302|1024x1024|strong');
    fake.dispatch(v3);
    const varied = await fake.waitFor(isImageEdit(v3.token));
    const varyCall = generator.calls.at(-1)!;
    expect(varyCall).toMatchObject({ task: 'vary', strength: 0.75 });
    expect(await nearest(varyCall.input!.bytes, gridBytes)).toBe(2);
    expect(varied.files.length).toBe(varyCall.seeds.length);
  });

  it('/imagine with an attached image: the image reaches the generator', async () => {
    const bytes = await sharp({
      create: { width: 512, height: 384, channels: 3, background: '#aa5500' },
    })
      .png()
      .toBuffer();
    const image = fake.uploadAttachment({
      bytes,
      filename: 'photo.png',
      contentType: 'image/png',
      width: 512,
      height: 384,
    });
    const interaction = fake.commandInteraction({
      prompt: 'as a watercolour',
      image,
      strength: 'subtle',
      count: 2,
    });
    fake.dispatch(interaction);
    const final = await fake.waitFor(isImageEdit(interaction.token));
    const call = generator.calls.at(-1)!;
    expect(call).toMatchObject({ task: 'vary', strength: 0.35, prompt: 'as a watercolour' });
    expect([call.input?.width, call.input?.height]).toEqual([512, 384]);
    const { dominant } = await sharp(call.input!.bytes).stats();
    expect(dominant).toMatchObject({ r: 168, g: 88, b: 8 });
    expect(final.files).toHaveLength(2);
  });
});
