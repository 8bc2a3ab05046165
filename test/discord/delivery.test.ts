import pino from 'pino';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DiscordApi } from '../../bot/discord/api.ts';
import { DiscordDeliverer } from '../../bot/discord/deliverer.ts';
import type { DiscordTarget } from '../../contracts/seal.ts';
import { DemoGenerator } from '../../worker/generators/demo.ts';
import { customIdsOf, GatedGenerator, isEdit, isImageEdit } from '../fakes/discord/harness.ts';
import { type FakeDiscord, startFakeDiscord } from '../fakes/discord/server.ts';
import { startTestImagine } from '../helpers/imagine.ts';

const demoImage = async (prompt: string, seed: number, width = 1024, height = 1024) =>
  (
    await new DemoGenerator().generate(
      { task: 'generate', prompt, seeds: [seed], width, height, steps: 4 },
      { signal: new AbortController().signal },
    )
  )[0]!;

describe('Discord delivery: upload limits and the 15-minute window', () => {
  let fake: FakeDiscord;
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  const generator = new GatedGenerator();

  beforeAll(async () => {
    fake = await startFakeDiscord();
    app = await startTestImagine(
      { DISCORD_TOKEN: fake.botToken, DISCORD_API_URL: fake.apiUrl },
      { generator },
    );
  });
  afterAll(async () => {
    generator.release();
    await app?.stop();
    await fake?.close();
  });

  it('re-encodes an image over the interaction’s upload limit until it fits (no 413)', async () => {
    const limit = 60_000;
    const original = await demoImage('a very detailed city', 11);
    expect(original.bytes.length).toBeGreaterThan(limit);
    const interaction = fake.commandInteraction({
      prompt: 'a very detailed city',
      seed: 11,
      attachmentSizeLimit: limit,
      count: 1,
    });
    fake.dispatch(interaction);
    const final = await fake.waitFor(isImageEdit(interaction.token));
    expect(fake.find(isEdit(interaction.token)).filter((r) => r.status === 413)).toEqual([]);
    const file = final.files[0]!;
    expect(file.bytes.length).toBeLessThanOrEqual(limit);
    expect(['image/webp', 'image/jpeg']).toContain(file.contentType);
    const meta = await sharp(file.bytes).metadata();
    expect(['webp', 'jpeg']).toContain(meta.format);
    expect(file.filename).toMatch(/\.(webp|jpg)$/);
    expect(final.body?.attachments).toEqual([
      { id: 0, filename: file.filename, description: 'a very detailed city' },
    ]);
  });

  it('a 413 despite the announced limit is answered by a smaller re-encoding', async () => {
    fake.enforcedUploadLimit = 40_000;
    try {
      const interaction = fake.commandInteraction({ prompt: 'lying limits', seed: 12, count: 1 });
      fake.dispatch(interaction);
      const final = await fake.waitFor(isImageEdit(interaction.token));
      const tooLarge = fake.find(isEdit(interaction.token)).filter((r) => r.status === 413);
      expect(tooLarge.length).toBeGreaterThan(0);
      expect(final.files[0]!.bytes.length).toBeLessThanOrEqual(40_000);
    } finally {
      fake.enforcedUploadLimit = undefined;
    }
  });

  it('an expired interaction token falls back to a channel message that mentions the user', async () => {
    generator.hold();
    const interaction = fake.commandInteraction({ prompt: 'slow gpu sunrise', seed: 13, count: 1 });
    fake.dispatch(interaction);
    await fake.waitFor((r) => isEdit(interaction.token)(r) && r.status === 200);
    const originalId = fake.original(interaction.token)!.id;
    fake.expireToken(interaction.token);
    generator.release();
    const post = await fake.waitFor(
      (r) =>
        r.method === 'POST' && r.path === `/api/v10/channels/${interaction.channel_id}/messages`,
    );
    expect(post.status).toBe(200);
    expect(fake.find(isEdit(interaction.token)).some((r) => r.status === 401)).toBe(true);
    const userId = interaction.member!.user.id;
    expect(String(post.body?.content)).toContain(`<@${userId}>`);
    expect(post.body?.allowed_mentions).toEqual({ users: [userId] });
    expect(post.body?.message_reference).toMatchObject({ message_id: originalId });
    expect(post.files).toHaveLength(1);
    expect((await sharp(post.files[0]!.bytes).metadata()).format).toBe('png');
    expect(customIdsOf(post.body)).toEqual([
      'up|0|13|1024x1024',
      'vy|0|13|1024x1024|subtle',
      'vy|0|13|1024x1024|strong',
      'reroll|1:1|1',
    ]);
    const [posted] = fake.channelMessages(interaction.channel_id);
    expect(posted?.message_reference?.message_id).toBe(originalId);
  });

  /** An interaction deferred as the adapter does, and its reply target. */
  const deferredTarget = (prompt: string, seed: number) => {
    const interaction = fake.commandInteraction({ prompt, seed });
    fake.acknowledge(interaction.token, { type: 5 });
    const target: DiscordTarget = {
      platform: 'discord',
      applicationId: fake.applicationId,
      interactionToken: interaction.token,
      issuedAt: Date.now(),
      userId: '1',
    };
    return { interaction, target };
  };

  it('past 15 minutes by the clock: straight to the channel, statuses dropped', async () => {
    const api = new DiscordApi({ apiUrl: fake.apiUrl, token: fake.botToken });
    const deliverer = new DiscordDeliverer({ api, logger: pino({ level: 'silent' }) });
    const interaction = fake.commandInteraction({ prompt: 'late', seed: 1 });
    const target: DiscordTarget = {
      platform: 'discord',
      applicationId: fake.applicationId,
      interactionToken: interaction.token,
      issuedAt: Date.now() - 16 * 60 * 1000,
      channelId: '700000000000000099',
      userId: '500000000000000009',
    };
    const before = fake.requests.length;
    const base = { jobId: 'job-late', createdAt: Date.now(), prompt: 'late', seed: 1 };
    await deliverer.deliver(target, { ...base, state: 'generating' });
    expect(fake.requests.length).toBe(before);
    const image = await demoImage('late', 1, 256, 256);
    await deliverer.deliver(target, {
      ...base,
      state: 'done',
      width: 256,
      height: 256,
      images: [
        { bytes: image.bytes, contentType: 'image/png', seed: image.seed, width: 256, height: 256 },
      ],
    });
    const sent = fake.requests.slice(before);
    expect(sent.map((r) => `${r.method} ${r.path}`)).toEqual([
      'POST /api/v10/channels/700000000000000099/messages',
    ]);
    expect(String(sent[0]!.body?.content)).toContain('<@500000000000000009>');
    expect(sent[0]!.files[0]!.bytes.equals(image.bytes)).toBe(true);
  });

  it('without a bot token, a result inside the safety margin still goes through the token', async () => {
    const api = new DiscordApi({ apiUrl: fake.apiUrl });
    const deliverer = new DiscordDeliverer({ api, logger: pino({ level: 'silent' }) });
    const interaction = fake.commandInteraction({ prompt: 'just in time', seed: 6 });
    fake.acknowledge(interaction.token, { type: 5 });
    const target: DiscordTarget = {
      platform: 'discord',
      applicationId: fake.applicationId,
      interactionToken: interaction.token,
      // 14 min 45 s: within the 30 s margin, yet the token still works.
      issuedAt: Date.now() - (14 * 60 + 45) * 1000,
      channelId: interaction.channel_id,
      userId: '1',
    };
    const image = await demoImage('just in time', 6, 256, 256);
    await deliverer.deliver(target, {
      jobId: 'job-just-in-time',
      state: 'done',
      createdAt: Date.now(),
      prompt: 'just in time',
      seed: 6,
      width: 256,
      height: 256,
      images: [
        { bytes: image.bytes, contentType: 'image/png', seed: image.seed, width: 256, height: 256 },
      ],
    });
    expect(fake.original(interaction.token)?.attachments).toHaveLength(1);
  });

  it('a failed job shows the error and a Retry button carrying its seed', async () => {
    const api = new DiscordApi({ apiUrl: fake.apiUrl, token: fake.botToken });
    const deliverer = new DiscordDeliverer({ api, logger: pino({ level: 'silent' }) });
    // Deferred (as the adapter would), then a failure delivered for it.
    const { interaction, target } = deferredTarget('doomed', 99);
    await deliverer.deliver(target, {
      jobId: 'job-failed',
      state: 'failed',
      createdAt: Date.now(),
      prompt: 'doomed',
      seed: 99,
      width: 1344,
      height: 768,
      error: { code: 'GENERATOR_TIMEOUT', message: 'the GPU took too long' },
    });
    const message = fake.original(interaction.token)!;
    expect(message.content).toMatch(/GENERATOR_TIMEOUT/);
    expect(message.content).toMatch(/Retry/);
    expect(customIdsOf(message as unknown as Record<string, unknown>)).toEqual(['retry|16:9|99|1']);
  });

  it('text from outside (an error echoing the prompt) never pings @everyone, roles or users', async () => {
    const api = new DiscordApi({ apiUrl: fake.apiUrl, token: fake.botToken });
    const deliverer = new DiscordDeliverer({ api, logger: pino({ level: 'silent' }) });
    const prompt = '@everyone @here <@&600000000000000001> <@500000000000000077> look';
    const { interaction, target } = deferredTarget(prompt, 3);
    await deliverer.deliver(target, {
      jobId: 'job-mentions',
      state: 'failed',
      createdAt: Date.now(),
      prompt,
      seed: 3,
      error: { code: 'GENERATOR_BAD_RESPONSE', message: `generator answered HTTP 422: ${prompt}` },
    });
    const message = fake.original(interaction.token)!;
    expect(message.content).toContain('@everyone');
    expect(message.mention_everyone).toBe(false);
    expect(message.mention_roles).toEqual([]);
    expect(message.mentions).toEqual([]);
  });

  it('a failure with a very long error still fits in 2000 characters, Retry included', async () => {
    const api = new DiscordApi({ apiUrl: fake.apiUrl, token: fake.botToken });
    const deliverer = new DiscordDeliverer({ api, logger: pino({ level: 'silent' }) });
    const { interaction, target } = deferredTarget('long error', 4);
    await deliverer.deliver(target, {
      jobId: 'job-long-error',
      state: 'failed',
      createdAt: Date.now(),
      prompt: 'long error',
      seed: 4,
      // The push contract allows 2000 characters of message and 100 of code.
      error: { code: 'E'.repeat(100), message: '🦊'.repeat(1000) },
    });
    const message = fake.original(interaction.token)!;
    expect(message.content.length).toBeLessThanOrEqual(2000);
    expect(message.content).toMatch(/Press Retry/);
    expect(customIdsOf(message as unknown as Record<string, unknown>)).toEqual(['retry||4|1']);
  });

  it('an image that cannot be delivered still leaves the user an answer with Retry', async () => {
    const api = new DiscordApi({ apiUrl: fake.apiUrl, token: fake.botToken });
    const deliverer = new DiscordDeliverer({ api, logger: pino({ level: 'silent' }) });
    const { interaction, target } = deferredTarget('unsendable', 5);
    const image = await demoImage('unsendable', 5, 256, 256);
    fake.enforcedUploadLimit = 100;
    try {
      await expect(
        deliverer.deliver(target, {
          jobId: 'job-unsendable',
          state: 'done',
          createdAt: Date.now(),
          prompt: 'unsendable',
          seed: 5,
          width: 256,
          height: 256,
          images: [
            {
              bytes: image.bytes,
              contentType: 'image/png',
              seed: image.seed,
              width: 256,
              height: 256,
            },
          ],
        }),
      ).rejects.toMatchObject({ code: 'DELIVERY_FAILED' });
    } finally {
      fake.enforcedUploadLimit = undefined;
    }
    const message = fake.original(interaction.token)!;
    expect(message.loading).toBe(false);
    expect(message.content).toMatch(/could not be (made|delivered)/);
    expect(customIdsOf(message as unknown as Record<string, unknown>)).toEqual([
      'retry|256x256|5|1',
    ]);
  });

  it('spaces status edits of one job; final states never wait', async () => {
    const api = new DiscordApi({ apiUrl: fake.apiUrl, token: fake.botToken });
    const deliverer = new DiscordDeliverer({
      api,
      logger: pino({ level: 'silent' }),
      statusIntervalMs: 400,
    });
    const { interaction, target } = deferredTarget('spaced', 2);
    const base = { jobId: 'job-spaced', createdAt: Date.now(), prompt: 'spaced', seed: 2 };
    await deliverer.deliver(target, { ...base, state: 'queued', position: 2 });
    await deliverer.deliver(target, { ...base, state: 'queued', position: 1 });
    await deliverer.deliver(target, { ...base, state: 'expired' });
    const edits = fake.find(isEdit(interaction.token));
    expect(edits.map((r) => String(r.body?.content).slice(0, 9))).toEqual([
      '⏳ Queued:',
      '⏳ Queued:',
      '⌛ This jo',
    ]);
    // Spaced, not sent back to back: the fake stamps each edit when its body has arrived, so the
    // first one's transit may eat into the 400 ms by a few milliseconds (it failed at 399).
    expect(edits[1]!.at - edits[0]!.at).toBeGreaterThanOrEqual(300);
    expect(customIdsOf(edits[2]!.body)).toEqual(['retry||2|1']);
  });

  it('a percentage that arrives while a change of state waits for its slot is shown, never overwritten by the older state', async () => {
    const api = new DiscordApi({ apiUrl: fake.apiUrl, token: fake.botToken });
    const deliverer = new DiscordDeliverer({
      api,
      logger: pino({ level: 'silent' }),
      statusIntervalMs: 300,
    });
    const { interaction, target } = deferredTarget('held', 3);
    const base = { jobId: 'job-held', createdAt: Date.now(), prompt: 'held', seed: 3 };
    await deliverer.deliver(target, { ...base, state: 'queued', position: 0 });
    // The worker starts and reports step 1 of 4 in the same moment, then is held there: the
    // state change waits for the job's next slot, and the percentage comes in behind it.
    const started = deliverer.deliver(target, { ...base, state: 'generating' });
    await deliverer.deliver(target, { ...base, state: 'generating', progress: 0.25 });
    await started;
    await vi.waitFor(
      () => expect(fake.original(interaction.token)?.content).toBe('🎨 Generating… 25%'),
      { timeout: 3000 },
    );
    // Nothing older replaces it afterwards.
    await new Promise((r) => setTimeout(r, 700));
    const edits = fake.find(isEdit(interaction.token)).map((r) => String(r.body?.content));
    expect(edits.at(-1)).toBe('🎨 Generating… 25%');
    expect(edits).toHaveLength(2);
    const times = fake.find(isEdit(interaction.token)).map((r) => r.at);
    expect(times[1]! - times[0]!).toBeGreaterThanOrEqual(200);
  });
});
