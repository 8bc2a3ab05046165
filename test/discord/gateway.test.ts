import pino from 'pino';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiscordApi } from '../../bot/discord/api.ts';
import { startDiscordGateway } from '../../bot/discord/gateway.ts';
import { routesOf, type SlashCommand, tellEphemeral } from '../../bot/discord/interactions.ts';
import { promptOf } from '../../bot/discord/messages.ts';
import {
  customIdsOf,
  embedOf,
  fieldsOf,
  GatedGenerator,
  isEdit,
  isImageEdit,
} from '../fakes/discord/harness.ts';
import { type FakeDiscord, startFakeDiscord } from '../fakes/discord/server.ts';
import { startTestImagine } from '../helpers/imagine.ts';

type Imagine = Awaited<ReturnType<typeof startTestImagine>>;

describe('Discord over the gateway (real discord.js against the fake)', () => {
  let fake: FakeDiscord;
  let app: Imagine | undefined;
  const generator = new GatedGenerator();
  const env = () => ({ DISCORD_TOKEN: fake.botToken, DISCORD_API_URL: fake.apiUrl });

  beforeAll(async () => {
    fake = await startFakeDiscord();
    app = await startTestImagine(env(), { generator });
  });
  afterAll(async () => {
    generator.release();
    await app?.stop();
    await fake?.close();
  });

  it('connects: GET /gateway/bot, IDENTIFY with the bot token, READY', () => {
    expect(fake.find((r) => r.path === '/api/v10/gateway/bot' && r.status === 200)).toHaveLength(1);
    expect(fake.identified).toHaveLength(1);
  });

  it('INTERACTION_CREATE → deferral → queued → generating → the image attached in place', async () => {
    generator.hold();
    const interaction = fake.commandInteraction({
      prompt: 'a *fox* in space',
      aspect: '16:9',
      seed: 42,
      count: 1,
    });
    fake.dispatch(interaction);
    const token = interaction.token;
    const queued = await fake.waitFor((r) => isEdit(token)(r) && r.status === 200);
    const generating = await fake.waitFor(
      (r) => isEdit(token)(r) && String(r.body?.content).includes('Generating'),
    );
    generator.release();
    const final = await fake.waitFor(isImageEdit(token));

    // The deferral came first, through the interaction callback, within the same request burst.
    const callback = fake.find((r) => r.path.includes(`/interactions/${interaction.id}/`))[0]!;
    expect(callback.body).toEqual({ type: 5 });
    expect(callback.status).toBe(204);
    expect(callback.at).toBeLessThanOrEqual(queued.at);

    // Status edits in order, then the image.
    const edits = fake.find(isEdit(token)).filter((r) => r.status === 200);
    expect(edits.map((r) => r.at)).toEqual([...edits.map((r) => r.at)].sort((a, b) => a - b));
    expect(edits[0]).toBe(queued);
    expect(String(queued.body?.content)).toMatch(/Queued/);
    expect(edits.indexOf(generating)).toBeLessThan(edits.indexOf(final));
    expect(edits.at(-1)).toBe(final);

    // Strict multipart: payload_json + files[0], attachments listing it.
    expect(final.multipart).toBe(true);
    expect(final.files.map((f) => f.field)).toEqual(['files[0]']);
    // …with the prompt as its alt text (the attachment's description).
    const attachments = final.body?.attachments as Array<{ id: number; filename: string }>;
    expect(attachments).toEqual([
      { id: 0, filename: final.files[0]!.filename, description: 'a *fox* in space' },
    ]);
    const meta = await sharp(final.files[0]!.bytes).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 1344, 768]);

    // Embed: prompt (escaped markdown), seed, size, time; buttons carry the size.
    const embed = embedOf(final.body);
    expect(embed.description).toBe('a \\*fox\\* in space');
    expect(embed.image?.url).toBe(`attachment://${final.files[0]!.filename}`);
    const fields = fieldsOf(final.body);
    expect(fields.Seed).toBe('42');
    expect(fields.Size).toBe('1344×768');
    expect(fields.Time).toMatch(/^\d+\.\d s$/);
    expect(customIdsOf(final.body)).toEqual([
      'up|0|42|1344x768',
      'vy|0|42|1344x768|subtle',
      'vy|0|42|1344x768|strong',
      'reroll|16:9|1',
    ]);

    // What the channel now shows.
    const message = fake.original(token)!;
    expect(message.attachments).toHaveLength(1);
    expect(message.content).toBe('');
  });

  it('waits out a 429 (Retry-After) and still delivers', async () => {
    const interaction = fake.commandInteraction({ prompt: 'rate limited lighthouse', seed: 7 });
    const token = interaction.token;
    fake.rateLimitNext((method, path) => method === 'PATCH' && path.includes(token), 1);
    fake.dispatch(interaction);
    const final = await fake.waitFor(isImageEdit(token));
    const edits = fake.find(isEdit(token));
    const limited = edits.find((r) => r.status === 429)!;
    expect(limited).toBeDefined();
    const retried = edits[edits.indexOf(limited) + 1]!;
    expect(retried.status).toBe(200);
    // Not before Retry-After said (1 s).
    expect(retried.at - limited.at).toBeGreaterThanOrEqual(1000);
    expect(fieldsOf(final.body).Seed).toBe('7');
  });

  it('Re-roll and Variations work from a fresh process (nothing in memory)', async () => {
    const interaction = fake.commandInteraction({
      prompt: 'moss on old stones',
      aspect: '3:4',
      seed: 5,
    });
    fake.dispatch(interaction);
    await fake.waitFor(isImageEdit(interaction.token));
    const message = fake.original(interaction.token)!;

    // A whole new imagine: new relay, worker, adapter, gateway session.
    await app!.stop();
    app = await startTestImagine(env(), { generator });
    expect(fake.identified).toHaveLength(1);

    const reroll = fake.buttonInteraction(message, 'reroll|3:4');
    fake.dispatch(reroll);
    const rerolled = await fake.waitFor(isImageEdit(reroll.token));
    expect(fake.find((r) => r.path.includes(`/interactions/${reroll.id}/`))[0]?.body).toEqual({
      type: 5,
    });
    const embed = embedOf(rerolled.body);
    expect(embed.description).toBe('moss on old stones');
    expect(fieldsOf(rerolled.body).Seed).not.toBe('5');
    const meta = await sharp(rerolled.files[0]!.bytes).metadata();
    expect([meta.width, meta.height]).toEqual([896, 1152]);

    const vary = fake.buttonInteraction(message, 'vary|3:4');
    fake.dispatch(vary);
    const seeds = new Set<string>();
    for (let i = 0; i < 4; i++) {
      // Each variation lands in its own follow-up message.
      const follow = await fake.waitFor(
        (r) =>
          r.method === 'PATCH' &&
          r.path.includes(vary.token) &&
          !r.path.endsWith('@original') &&
          r.files.length > 0 &&
          !seeds.has(fieldsOf(r.body).Seed ?? ''),
      );
      seeds.add(fieldsOf(follow.body).Seed!);
      expect(embedOf(follow.body).description).toBe('moss on old stones');
    }
    expect(seeds.size).toBe(4);
    const followUps = fake.followUps(vary.token);
    expect(followUps).toHaveLength(4);
    expect(followUps.every((m) => m.attachments.length === 1)).toBe(true);
    expect(fake.original(vary.token)?.content).toMatch(/4 variations/);
  });

  it('a 1000-character prompt of markdown, mentions and emoji survives the embed and a Re-roll', async () => {
    const unit = '**@everyone** <@&1> _x_ 🦊|`#` ';
    let prompt = '';
    while ([...prompt].length < 1000) prompt += unit;
    prompt = [...prompt].slice(0, 999).join('').trimEnd();
    prompt += '!'.repeat(1000 - [...prompt].length);
    expect([...prompt]).toHaveLength(1000);
    const interaction = fake.commandInteraction({ prompt, seed: 8 });
    fake.dispatch(interaction);
    const final = await fake.waitFor(isImageEdit(interaction.token));
    const message = fake.original(interaction.token)!;
    expect(message.mention_everyone).toBe(false);
    const reroll = fake.buttonInteraction(
      message,
      customIdsOf(final.body).find((id) => id.startsWith('reroll'))!,
    );
    fake.dispatch(reroll);
    const rerolled = await fake.waitFor(isImageEdit(reroll.token));
    expect(promptOf({ embeds: [embedOf(rerolled.body)] })).toBe(prompt);
  });

  it('refuses a bad prompt ephemerally, without deferring', async () => {
    const interaction = fake.commandInteraction({ prompt: '   ' });
    fake.dispatch(interaction);
    const cb = await fake.waitFor((r) => r.path.includes(`/interactions/${interaction.id}/`));
    expect(cb.body).toMatchObject({
      type: 4,
      data: { flags: 64, allowed_mentions: { parse: [] } },
    });
    expect(JSON.stringify(cb.body)).toMatch(/prompt is empty/);
  });
});

describe('Discord gateway: a slow handler', () => {
  it('is deferred before Discord’s 3 s run out, and its answer follows, ephemeral', async () => {
    const fake = await startFakeDiscord();
    const api = new DiscordApi({ apiUrl: fake.apiUrl, token: fake.botToken });
    const slow: SlashCommand = {
      data: { name: 'imagine', description: 'slow' },
      async execute(ctx) {
        await new Promise((r) => setTimeout(r, 600));
        await tellEphemeral(ctx, 'done at last');
      },
    };
    const gateway = await startDiscordGateway({
      token: fake.botToken,
      apiUrl: fake.apiUrl,
      api,
      routes: routesOf([slow], []),
      submit: async () => {
        throw new Error('not used');
      },
      logger: pino({ level: 'silent' }),
      responseDeadlineMs: 200,
    });
    try {
      const interaction = fake.commandInteraction({ prompt: 'x' });
      fake.dispatch(interaction);
      const answer = await fake.waitFor(
        (r) =>
          r.method === 'POST' &&
          r.path.includes(`/webhooks/`) &&
          r.path.includes(interaction.token),
      );
      const callback = fake.find((r) => r.path.includes(`/interactions/${interaction.id}/`));
      expect(callback.map((r) => [r.status, r.body?.type])).toEqual([[204, 5]]);
      expect(answer.status).toBe(200);
      expect(answer.body).toMatchObject({ content: 'done at last', flags: 64 });
    } finally {
      await gateway.stop();
      await fake.close();
    }
  });
});
