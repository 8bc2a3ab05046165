/**
 * On a deployment whose generator upscales to less than the contract's 4096 (Flux on Modal:
 * 2048), Discord offers no Upscale button that would fail later, and a click on an older
 * message's Upscale is refused at once, privately, saying why; nothing is queued.
 */
import pino from 'pino';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chatAdaptersFromConfig } from '../../bot/adapters.ts';
import { DiscordApi } from '../../bot/discord/api.ts';
import { DiscordDeliverer } from '../../bot/discord/deliverer.ts';
import { loadConfig } from '../../contracts/config.ts';
import type { ChatDeliverer, DeliveredImage, DeliveryEvent } from '../../contracts/delivery.ts';
import type { DiscordTarget } from '../../contracts/seal.ts';
import { customIdsOf, GatedGenerator, inputHosts, isImageEdit } from '../fakes/discord/harness.ts';
import { type FakeDiscord, startFakeDiscord } from '../fakes/discord/server.ts';
import { startTestImagine, TEST_SECRET } from '../helpers/imagine.ts';

const MODAL = { GENERATOR: 'modal', MODAL_FLUX_URL: 'http://127.0.0.1:9/' };

async function image(side: number, seed: number): Promise<DeliveredImage> {
  const bytes = await sharp({
    create: { width: side, height: side, channels: 3, background: { r: 90, g: 30, b: seed % 256 } },
  })
    .png()
    .toBuffer();
  return { bytes, contentType: 'image/png', seed, width: side, height: side };
}

describe('Discord on GENERATOR=modal: Upscale only where the Flux app can make it', () => {
  let fake: FakeDiscord;

  beforeAll(async () => {
    fake = await startFakeDiscord();
  });
  afterAll(async () => {
    await fake?.close();
  });

  /** Deliver `images` (a finished job of that task) to a deferred interaction; its message. */
  async function deliver(
    deliverer: ChatDeliverer,
    task: 'generate' | 'upscale',
    images: DeliveredImage[],
  ) {
    const interaction = fake.commandInteraction({ prompt: 'a lighthouse' });
    fake.acknowledge(interaction.token, { type: 5 });
    const target: DiscordTarget = {
      platform: 'discord',
      applicationId: fake.applicationId,
      interactionToken: interaction.token,
      issuedAt: Date.now(),
      channelId: interaction.channel_id,
      userId: '500000000000000001',
    };
    const event: DeliveryEvent = {
      jobId: `job-${task}-${images[0]!.seed}`,
      state: 'done',
      task,
      createdAt: Date.now(),
      prompt: 'a lighthouse',
      seed: images[0]!.seed,
      width: images[0]!.width,
      height: images[0]!.height,
      count: images.length,
      images,
    };
    await deliverer.deliver(target, event);
    const [edit] = fake.find(isImageEdit(interaction.token));
    return { ids: customIdsOf(edit!.body), message: fake.original(interaction.token)! };
  }

  it('the adapter built from configuration offers U on a 1024² grid, and no further Upscale on a 2048² upscale', async () => {
    const config = loadConfig({
      ...MODAL,
      RELAY_SECRET: TEST_SECRET,
      DISCORD_TOKEN: fake.botToken,
      DISCORD_API_URL: fake.apiUrl,
    });
    const [adapter] = await chatAdaptersFromConfig({ config, logger: pino({ level: 'silent' }) });
    const deliverer = adapter!.deliverer!;
    const grid = await deliver(deliverer, 'generate', [await image(1024, 1), await image(1024, 2)]);
    expect(grid.ids).toContain('up|0|1|1024x1024');
    expect(grid.ids).toContain('up|1|2|1024x1024');
    const upscaled = await deliver(deliverer, 'upscale', [await image(2048, 3)]);
    expect(upscaled.ids).toEqual(['vy|0|3|2048x2048|subtle', 'vy|0|3|2048x2048|strong']);
    await adapter!.stop?.();
  });

  it('an Upscale on a 2048² image (a message from before) is refused privately, and nothing is queued', async () => {
    // Posted by a deliverer that knew no limit of Modal's, as an older deployment's would be.
    const older = new DiscordDeliverer({
      api: new DiscordApi({ apiUrl: fake.apiUrl, token: fake.botToken }),
      logger: pino({ level: 'silent' }),
    });
    const { ids, message } = await deliver(older, 'upscale', [await image(2048, 4)]);
    expect(ids).toContain('up|0|4|2048x2048');
    const generator = new GatedGenerator();
    const app = await startTestImagine(
      { ...MODAL, DISCORD_TOKEN: fake.botToken, DISCORD_API_URL: fake.apiUrl, ...inputHosts(fake) },
      { generator },
    );
    try {
      const click = fake.buttonInteraction(message, 'up|0|4|2048x2048');
      fake.dispatch(click);
      const answer = await fake.waitFor(
        (r) =>
          r.path.includes(click.token) &&
          ((r.method === 'POST' && r.path.endsWith(click.token)) ||
            (r.method === 'PATCH' && r.status === 200)),
      );
      expect(answer.method).toBe('POST');
      expect(answer.body).toMatchObject({ flags: 64 });
      expect(String(answer.body?.content)).toMatch(
        /its upscale would be 4096×4096, over the 2048 pixels a side this server's image generator upscales to/,
      );
      expect(app.relay!.relay.tracker.queuedCount).toBe(0);
    } finally {
      await app.stop();
    }
  });
});
