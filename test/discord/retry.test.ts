/**
 * Retry under a failed job makes the job that failed again: the same prompt, seed, count and
 * model, read from the button alone (a fresh process can answer it).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImagineError } from '../../contracts/errors.ts';
import type { GeneratedImage, GenerateRequest, Generator } from '../../worker/generator.ts';
import { DemoGenerator } from '../../worker/generators/demo.ts';
import { customIdsOf, isEdit, isImageEdit } from '../fakes/discord/harness.ts';
import { type FakeDiscord, startFakeDiscord } from '../fakes/discord/server.ts';
import { startTestImagine } from '../helpers/imagine.ts';

/** The demo generator, failing while `failing` is set; it records every request. */
class FailingGenerator implements Generator {
  readonly name = 'demo';
  failing = true;
  readonly seen: GenerateRequest[] = [];
  private readonly demo = new DemoGenerator();
  async generate(req: GenerateRequest, opts: { signal: AbortSignal }): Promise<GeneratedImage[]> {
    this.seen.push(req);
    if (this.failing) throw new ImagineError('GENERATION_FAILED', 'the model crashed');
    return this.demo.generate(req, opts);
  }
}

describe('Discord Retry carries the failed job’s count and model', () => {
  let fake: FakeDiscord;
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  const generator = new FailingGenerator();
  const env = () => ({
    DISCORD_TOKEN: fake.botToken,
    DISCORD_API_URL: fake.apiUrl,
    MODELS: 'flux1-schnell, sdxl-base',
  });

  beforeAll(async () => {
    fake = await startFakeDiscord();
    app = await startTestImagine(env(), { generator });
  });
  afterAll(async () => {
    await app?.stop();
    await fake?.close();
  });

  it('a job of 3 with a model fails; Retry (after a restart) asks for 3 images of that model and seed', async () => {
    const interaction = fake.commandInteraction({
      prompt: 'three herons',
      seed: 11,
      count: 3,
      model: 'sdxl-base',
    });
    fake.dispatch(interaction);
    const failed = await fake.waitFor(
      (r) => isEdit(interaction.token)(r) && String(r.body?.content).includes('could not be made'),
    );
    expect(customIdsOf(failed.body)).toEqual(['retry|1:1|11|3|sdxl-base']);
    expect(generator.seen).toMatchObject([{ seeds: [11, 12, 13], model: 'sdxl-base' }]);

    // Nothing of the failed job is remembered: a new process answers the click.
    await app.stop();
    app = await startTestImagine(env(), { generator });
    generator.failing = false;
    const message = fake.original(interaction.token)!;
    const click = fake.buttonInteraction(message, 'retry|1:1|11|3|sdxl-base');
    fake.dispatch(click);
    const done = await fake.waitFor(isImageEdit(click.token));
    expect(done.files).toHaveLength(3);
    expect(generator.seen.slice(1)).toMatchObject([
      { task: 'generate', seeds: [11, 12, 13], model: 'sdxl-base' },
    ]);
  });

  it('Re-roll of a job of 2 with a model (after a restart) asks for 2 new images of that model', async () => {
    generator.failing = false;
    const interaction = fake.commandInteraction({
      prompt: 'two cranes',
      seed: 40,
      count: 2,
      model: 'sdxl-base',
    });
    fake.dispatch(interaction);
    const done = await fake.waitFor(isImageEdit(interaction.token));
    expect(customIdsOf(done.body)).toContain('reroll|1:1|2|sdxl-base');

    await app.stop();
    app = await startTestImagine(env(), { generator });
    const seen = generator.seen.length;
    const click = fake.buttonInteraction(
      fake.original(interaction.token)!,
      'reroll|1:1|2|sdxl-base',
    );
    fake.dispatch(click);
    const rerolled = await fake.waitFor(isImageEdit(click.token));
    expect(rerolled.files).toHaveLength(2);
    const again = generator.seen.slice(seen);
    expect(again).toMatchObject([{ task: 'generate', model: 'sdxl-base' }]);
    expect(again[0]!.seeds).toHaveLength(2);
    expect(again[0]!.seeds).not.toEqual([40, 41]);
  });
});
