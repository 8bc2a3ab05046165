/**
 * The creative loop on Discord: a job of N images as N attachments in one edit, U/V buttons and
 * the subtle menu that work from the message alone (after a restart of everything), and
 * `/imagine` with an image attached.
 */
import pino from 'pino';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiscordApi } from '../../bot/discord/api.ts';
import { DiscordDeliverer } from '../../bot/discord/deliverer.ts';
import type { DeliveredImage, DeliveryEvent } from '../../contracts/delivery.ts';
import type { DiscordTarget } from '../../contracts/seal.ts';
import type { Submission } from '../../submit/submit.ts';
import { DemoGenerator } from '../../worker/generators/demo.ts';
import { customIdsOf, GatedGenerator, inputHosts, isImageEdit } from '../fakes/discord/harness.ts';
import { type FakeDiscord, startFakeDiscord } from '../fakes/discord/server.ts';
import { startTestImagine } from '../helpers/imagine.ts';

type Imagine = Awaited<ReturnType<typeof startTestImagine>>;

async function demoImages(prompt: string, seed: number, count: number, side = 256) {
  const seeds = Array.from({ length: count }, (_, i) => seed + i);
  return (
    await new DemoGenerator().generate(
      { task: 'generate', prompt, seeds, width: side, height: side, steps: 4 },
      { signal: new AbortController().signal },
    )
  ).map((g) => ({ ...g }) as DeliveredImage);
}

/** Record every submission reaching the submit path. */
function recordSubmissions(app: Imagine): Submission[] {
  const door = app.relay!.frontDoor;
  const inner = door.submit;
  const seen: Submission[] = [];
  door.submit = (s) => {
    seen.push(s);
    return inner(s);
  };
  return seen;
}

describe('Discord: a grid of four', () => {
  let fake: FakeDiscord;

  beforeAll(async () => {
    fake = await startFakeDiscord();
  });
  afterAll(async () => {
    await fake?.close();
  });

  /** Deliver a finished grid to a deferred interaction, as the relay would. */
  async function deliverGrid(prompt: string, seed: number, count = 4) {
    const deliverer = new DiscordDeliverer({
      api: new DiscordApi({ apiUrl: fake.apiUrl, token: fake.botToken }),
      logger: pino({ level: 'silent' }),
    });
    const interaction = fake.commandInteraction({ prompt, seed });
    fake.acknowledge(interaction.token, { type: 5 });
    const target: DiscordTarget = {
      platform: 'discord',
      applicationId: fake.applicationId,
      interactionToken: interaction.token,
      issuedAt: Date.now(),
      channelId: interaction.channel_id,
      userId: '500000000000000001',
    };
    const images = await demoImages(prompt, seed, count);
    const event: DeliveryEvent = {
      jobId: `job-grid-${seed}`,
      state: 'done',
      task: 'generate',
      createdAt: Date.now(),
      prompt,
      seed,
      width: 256,
      height: 256,
      count,
      images,
    };
    await deliverer.deliver(target, event);
    return { interaction, images, message: fake.original(interaction.token)! };
  }

  it('a job of 4 reaches Discord as 4 attachments in one edit, with U1–U4, V1–V4, Re-roll and a subtle menu', async () => {
    const { interaction, images, message } = await deliverGrid('four foxes', 40);
    const edits = fake.find(isImageEdit(interaction.token));
    expect(edits).toHaveLength(1);
    const [edit] = edits;
    expect(edit!.files.map((f) => f.field)).toEqual([
      'files[0]',
      'files[1]',
      'files[2]',
      'files[3]',
    ]);
    expect(edit!.files.map((f) => f.filename)).toEqual(images.map((i) => `imagine-${i.seed}.png`));
    expect(edit!.body?.attachments).toEqual(
      // Each with the prompt as its alt text.
      images.map((i, id) => ({ id, filename: `imagine-${i.seed}.png`, description: 'four foxes' })),
    );
    for (const [i, f] of edit!.files.entries()) expect(f.bytes.equals(images[i]!.bytes)).toBe(true);
    expect(message.attachments).toHaveLength(4);
    expect(customIdsOf(edit!.body)).toEqual([
      'up|0|40|256x256',
      'up|1|41|256x256',
      'up|2|42|256x256',
      'up|3|43|256x256',
      'reroll|256x256|4',
      'vy|0|40|256x256|strong',
      'vy|1|41|256x256|strong',
      'vy|2|42|256x256|strong',
      'vy|3|43|256x256|strong',
      'vys|256x256',
    ]);
    // The mosaic shows the attachments; the embed holds the prompt and no image of its own.
    const embeds = edit!.body!.embeds as Array<{ image?: unknown; description: string }>;
    const embed = embeds[0]!;
    expect(embed.image).toBeUndefined();
    expect(embed.description).toBe('four foxes');
  });

  it('one image: Upscale, Vary (Subtle), Vary (Strong), Re-roll; an upscale: Vary and a further Upscale', async () => {
    const { interaction } = await deliverGrid('one fox', 50, 1);
    const [edit] = fake.find(isImageEdit(interaction.token));
    expect(customIdsOf(edit!.body)).toEqual([
      'up|0|50|256x256',
      'vy|0|50|256x256|subtle',
      'vy|0|50|256x256|strong',
      'reroll|256x256|1',
    ]);
  });

  describe('clicks work from the message alone, after the whole process restarts', () => {
    let app: Imagine;
    const generator = new GatedGenerator();
    const env = () => ({
      DISCORD_TOKEN: fake.botToken,
      DISCORD_API_URL: fake.apiUrl,
      ...inputHosts(fake),
    });

    afterAll(async () => {
      generator.release();
      await app?.stop();
    });

    it('U2, V3 and the subtle menu reference the right attachment of the message', async () => {
      const { message, images } = await deliverGrid('a grid to pick from', 60);
      const attachment = (i: number) => message.attachments[i]!;

      app = await startTestImagine(env(), { generator });
      let submissions = recordSubmissions(app);
      const u2 = fake.buttonInteraction(message, 'up|1|61|256x256');
      fake.dispatch(u2);
      await fake.waitFor((r) => r.path.includes(`/interactions/${u2.id}/`));
      await fake.waitFor((r) => r.path.includes(u2.token) && r.method === 'PATCH');
      expect(submissions).toHaveLength(1);
      const u2Request = submissions[0]!.request as Record<string, unknown>;
      expect(u2Request).toMatchObject({
        prompt: 'a grid to pick from',
        task: 'upscale',
        input: { index: 1, seed: 61, width: 256, height: 256, image: { kind: 'url' } },
      });
      const url = new URL((u2Request.input as { image: { url: string } }).image.url);
      expect(`${url.origin}${url.pathname}`).toBe(attachment(1).url);
      expect(url.pathname).toMatch(new RegExp(`/imagine-${images[1]!.seed}\\.png$`));

      // Everything restarts: relay, worker, adapter, gateway session. Nothing was stored.
      await app.stop();
      app = await startTestImagine(env(), { generator });
      submissions = recordSubmissions(app);
      const v3 = fake.buttonInteraction(message, 'vy|2|62|256x256|strong');
      fake.dispatch(v3);
      await fake.waitFor((r) => r.path.includes(v3.token) && r.method === 'PATCH');
      const subtle = fake.selectInteraction(message, 'vys|256x256', ['3|63']);
      fake.dispatch(subtle);
      await fake.waitFor((r) => r.path.includes(subtle.token) && r.method === 'PATCH');
      expect(submissions.map((s) => s.request)).toMatchObject([
        { task: 'vary', strength: 'strong', input: { index: 2, seed: 62 } },
        { task: 'vary', strength: 'subtle', input: { index: 3, seed: 63 } },
      ]);
      const v3Url = (submissions[0]!.request as { input: { image: { url: string } } }).input.image
        .url;
      expect(v3Url.split('?')[0]).toBe(attachment(2).url);
    });

    it('a button whose image is gone from the message is told so, privately', async () => {
      const { message } = await deliverGrid('stripped', 70);
      app ??= await startTestImagine(env(), { generator });
      const stripped = { ...message, attachments: [] };
      const click = fake.buttonInteraction(stripped, 'up|1|71|256x256');
      fake.dispatch(click);
      const cb = await fake.waitFor((r) => r.path.includes(`/interactions/${click.id}/`));
      expect(cb.body).toMatchObject({ type: 4, data: { flags: 64 } });
      expect(JSON.stringify(cb.body)).toMatch(/no longer carries that image/);
    });
  });
});

describe('Discord: every click passes the same limits and rules as /imagine', () => {
  let fake: FakeDiscord;
  let app: Imagine;

  beforeAll(async () => {
    fake = await startFakeDiscord();
    app = await startTestImagine({
      DISCORD_TOKEN: fake.botToken,
      DISCORD_API_URL: fake.apiUrl,
      LIMIT_IMAGES_PER_USER: '1',
      BLOCKED_WORDS: 'kraken',
      ...inputHosts(fake),
    });
  });
  afterAll(async () => {
    await app?.stop();
    await fake?.close();
  });

  /** A finished grid posted for `prompt` (before any rule changed), as its message. */
  async function gridMessage(prompt: string) {
    const deliverer = new DiscordDeliverer({
      api: new DiscordApi({ apiUrl: fake.apiUrl, token: fake.botToken }),
      logger: pino({ level: 'silent' }),
    });
    const interaction = fake.commandInteraction({ prompt });
    fake.acknowledge(interaction.token, { type: 5 });
    const images = await demoImages(prompt, 5, 4);
    await deliverer.deliver(
      {
        platform: 'discord',
        applicationId: fake.applicationId,
        interactionToken: interaction.token,
        issuedAt: Date.now(),
        userId: '1',
      },
      { jobId: 'j', state: 'done', createdAt: Date.now(), prompt, seed: 5, images },
    );
    return fake.original(interaction.token)!;
  }

  /** Click and return what the user was told privately, or 'queued'. */
  async function click(
    interaction:
      | ReturnType<FakeDiscord['buttonInteraction']>
      | ReturnType<FakeDiscord['selectInteraction']>,
  ): Promise<string> {
    fake.dispatch(interaction);
    const answer = await fake.waitFor(
      (r) =>
        r.path.includes(interaction.token) &&
        ((r.method === 'POST' && r.path.endsWith(interaction.token)) ||
          (r.method === 'PATCH' && r.status === 200)),
    );
    return answer.method === 'POST' ? String(answer.body?.content) : 'queued';
  }

  it('blocked words apply to the prompt a vary or upscale reads from the message', async () => {
    const message = await gridMessage('a kraken at sea');
    expect(await click(fake.buttonInteraction(message, 'vy|2|7|256x256|strong'))).toMatch(
      /not allowed here/,
    );
    expect(await click(fake.selectInteraction(message, 'vys|256x256', ['0|5']))).toMatch(
      /not allowed here/,
    );
    expect(await click(fake.buttonInteraction(message, 'up|1|6|256x256'))).toMatch(
      /not allowed here/,
    );
  });

  it('the per-user limit counts clicks: the second one in the window is refused', async () => {
    const message = await gridMessage('a calm sea');
    expect(await click(fake.buttonInteraction(message, 'up|1|6|256x256'))).toBe('queued');
    expect(await click(fake.buttonInteraction(message, 'vy|2|7|256x256|subtle'))).toMatch(/🐢/);
  });
});

describe('Discord: /imagine with an image attached', () => {
  let fake: FakeDiscord;
  let app: Imagine;
  let submissions: Submission[];

  beforeAll(async () => {
    fake = await startFakeDiscord();
    app = await startTestImagine({
      DISCORD_TOKEN: fake.botToken,
      DISCORD_API_URL: fake.apiUrl,
      ...inputHosts(fake),
    });
    submissions = recordSubmissions(app);
  });
  afterAll(async () => {
    await app?.stop();
    await fake?.close();
  });

  const png = () =>
    sharp({ create: { width: 320, height: 240, channels: 3, background: '#336699' } })
      .png()
      .toBuffer();

  it('references the attachment (data.resolved.attachments) as the input of a vary', async () => {
    const before = submissions.length;
    const image = fake.uploadAttachment({
      bytes: await png(),
      filename: 'sketch.png',
      contentType: 'image/png',
      width: 320,
      height: 240,
    });
    const interaction = fake.commandInteraction({
      prompt: 'make it a painting',
      image,
      strength: 'subtle',
      count: 2,
    });
    fake.dispatch(interaction);
    await fake.waitFor((r) => r.path.includes(interaction.token) && r.method === 'PATCH');
    expect(submissions.slice(before).map((s) => s.request)).toEqual([
      {
        prompt: 'make it a painting',
        strength: 'subtle',
        count: 2,
        input: { image: { kind: 'url', url: image.url }, width: 320, height: 240 },
      },
    ]);
  });

  it('refuses an attachment that is not an image, and a strength without one, privately', async () => {
    const before = submissions.length;
    const text = fake.uploadAttachment({
      bytes: Buffer.from('hello'),
      filename: 'notes.txt',
      contentType: 'text/plain; charset=utf-8',
    });
    for (const interaction of [
      fake.commandInteraction({ prompt: 'x', image: text }),
      fake.commandInteraction({ prompt: 'x', strength: 'strong' }),
    ]) {
      fake.dispatch(interaction);
      const cb = await fake.waitFor((r) => r.path.includes(`/interactions/${interaction.id}/`));
      expect(cb.body).toMatchObject({ type: 4, data: { flags: 64 } });
    }
    const texts = fake
      .find((r) => r.path.includes('/interactions/'))
      .slice(-2)
      .map((r) => JSON.stringify(r.body));
    expect(texts[0]).toMatch(/PNG, JPEG or WebP/);
    expect(texts[1]).toMatch(/strength goes with an image/);
    expect(submissions.length).toBe(before);
  });

  it('registers image, strength and count on /imagine', async () => {
    const { imagineCommand } = await import('../../bot/discord/commands/imagine.ts');
    const options = imagineCommand.data.options ?? [];
    expect(options.map((o) => [o.name, o.type])).toEqual([
      ['prompt', 3],
      ['image', 11],
      ['strength', 3],
      ['count', 4],
      ['aspect', 3],
      ['seed', 4],
      ['model', 3],
    ]);
  });
});
