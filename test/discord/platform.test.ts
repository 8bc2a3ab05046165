/**
 * Discord's own rules, enforced by the fake, against the deliverer and the HTTP receiver: deleted
 * messages (10008), webhooks that 404, upload limits by boost tier, permissions in threads, the
 * 15-minute token on Discord's clock, the 3 s initial response, per-route rate limits.
 */
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { RESTEvents } from '@discordjs/rest';
import pino from 'pino';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiscordApi } from '../../bot/discord/api.ts';
import { DiscordDeliverer } from '../../bot/discord/deliverer.ts';
import { createDiscordAdapter } from '../../bot/discord/index.ts';
import { routesOf, type SlashCommand, tellEphemeral } from '../../bot/discord/interactions.ts';
import type { DeliveryEvent } from '../../contracts/delivery.ts';
import type { DiscordTarget } from '../../contracts/seal.ts';
import { DemoGenerator } from '../../worker/generators/demo.ts';
import { discordSigner, isEdit } from '../fakes/discord/harness.ts';
import {
  type FakeDiscord,
  PERMISSIONS,
  startFakeDiscord,
  TOKEN_LIFETIME_MS,
} from '../fakes/discord/server.ts';
import { startTestImagine } from '../helpers/imagine.ts';

const MIB = 1024 * 1024;

const demoImage = async (prompt: string, seed: number, side = 256) =>
  (
    await new DemoGenerator().generate(
      { task: 'generate', prompt, seeds: [seed], width: side, height: side, steps: 4 },
      { signal: new AbortController().signal },
    )
  )[0]!;

/** The images of a done event: one, of `bytes`. */
const one = (bytes: Buffer, contentType = 'image/png') => [
  { bytes, contentType, seed: 1, width: 256, height: 256 },
];

/** A PNG that cannot be compressed: random pixels, stored (about 12.6 MB at 2048²). */
async function bigPng(): Promise<Buffer> {
  const side = 2048;
  return sharp(randomBytes(side * side * 3), { raw: { width: side, height: side, channels: 3 } })
    .png({ compressionLevel: 0 })
    .toBuffer();
}

/** A logger whose lines the test can read. */
function capturedLogger(): { logger: pino.Logger; lines: () => string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines: () => lines };
}

describe('Discord delivery against the platform’s rules', () => {
  let fake: FakeDiscord;

  beforeAll(async () => {
    fake = await startFakeDiscord();
  });
  afterAll(async () => {
    await fake?.close();
  });

  const deliverer = (opts: { token?: boolean; logger?: pino.Logger; now?: () => number } = {}) =>
    new DiscordDeliverer({
      api: new DiscordApi({
        apiUrl: fake.apiUrl,
        token: opts.token === false ? undefined : fake.botToken,
      }),
      logger: opts.logger ?? pino({ level: 'silent' }),
      statusIntervalMs: 0,
      ...(opts.now ? { now: opts.now } : {}),
    });

  /** An interaction deferred as the adapter does, and its reply target. */
  function deferred(
    prompt: string,
    opts: {
      channelId?: string;
      guildId?: string;
      issuedAt?: number;
      attachmentSizeLimit?: number;
    } = {},
  ) {
    const interaction = fake.commandInteraction({
      prompt,
      ...(opts.channelId ? { channelId: opts.channelId } : {}),
      ...(opts.guildId ? { guildId: opts.guildId } : {}),
    });
    fake.acknowledge(interaction.token, { type: 5 });
    const target: DiscordTarget = {
      platform: 'discord',
      applicationId: fake.applicationId,
      interactionToken: interaction.token,
      issuedAt: opts.issuedAt ?? Date.now(),
      channelId: interaction.channel_id,
      guildId: interaction.guild_id!,
      userId: '500000000000000001',
      ...(opts.attachmentSizeLimit ? { attachmentSizeLimit: opts.attachmentSizeLimit } : {}),
    };
    return { interaction, target };
  }

  const event = (
    jobId: string,
    state: DeliveryEvent['state'],
    extra: Partial<DeliveryEvent> = {},
  ) => ({ jobId, state, createdAt: Date.now(), prompt: 'p', seed: 1, ...extra }) as DeliveryEvent;

  const webhookCalls = (token: string) => fake.find((r) => r.path.includes(token));
  const channelPosts = (channelId: string) =>
    fake.find((r) => r.method === 'POST' && r.path === `/api/v10/channels/${channelId}/messages`);

  it('a deleted message (10008): statuses stop, the webhook is never called again, the image goes to the channel', async () => {
    const d = deliverer();
    const { interaction, target } = deferred('deleted midway');
    await d.deliver(target, event('job-deleted', 'queued', { position: 1 }));
    fake.deleteMessage(fake.original(interaction.token)!.id);
    await d.deliver(target, event('job-deleted', 'generating'));
    await d.deliver(target, event('job-deleted', 'generating'));
    const image = await demoImage('deleted midway', 1);
    const postsBefore = channelPosts(interaction.channel_id).length;
    await d.deliver(target, event('job-deleted', 'done', { images: one(image.bytes) }));
    const calls = webhookCalls(interaction.token);
    expect(calls.map((r) => r.status)).toEqual([200, 404]);
    const posts = channelPosts(interaction.channel_id).slice(postsBefore);
    expect(posts.map((r) => r.status)).toEqual([200]);
    expect(posts[0]!.files).toHaveLength(1);
    expect(String(posts[0]!.body?.content)).toContain('<@500000000000000001>');
  });

  it('a deleted message and no bot token: one 404, then a clean stop (no retry, no throw)', async () => {
    const d = deliverer({ token: false });
    const { interaction, target } = deferred('deleted, no bot');
    fake.deleteMessage(fake.original(interaction.token)!.id);
    await d.deliver(target, event('job-deleted-2', 'generating'));
    await expect(
      d.deliver(target, event('job-deleted-2', 'failed', { error: { code: 'X', message: 'y' } })),
    ).resolves.toBeUndefined();
    expect(webhookCalls(interaction.token).map((r) => r.status)).toEqual([404]);
  });

  it('a late channel post starts from the guild’s limit (boost tier 0: 10 MiB), not the interaction’s 500 MiB', async () => {
    const bytes = await bigPng();
    expect(bytes.length).toBeGreaterThan(10 * MIB);
    const d = deliverer();
    const { interaction, target } = deferred('nitro user, unboosted guild', {
      issuedAt: Date.now() - 16 * 60 * 1000,
      attachmentSizeLimit: 500 * MIB,
    });
    const before = channelPosts(interaction.channel_id).length;
    await d.deliver(target, event('job-tier-0', 'done', { images: one(bytes) }));
    const posts = channelPosts(interaction.channel_id).slice(before);
    expect(posts.map((r) => r.status)).toEqual([200]);
    expect(posts[0]!.files[0]!.bytes.length).toBeLessThanOrEqual(10 * MIB);
    expect(fake.find((r) => r.path === `/api/v10/guilds/${interaction.guild_id}`)).not.toHaveLength(
      0,
    );
  });

  it('a boost tier 3 guild takes the same image as it is (100 MiB)', async () => {
    const guildId = '600000000000000003';
    fake.guildTiers.set(guildId, 3);
    const bytes = await bigPng();
    const d = deliverer();
    const { interaction, target: boosted } = deferred('boosted guild', {
      issuedAt: Date.now() - 16 * 60 * 1000,
      guildId,
      channelId: '700000000000000033',
    });
    const before = channelPosts(interaction.channel_id).length;
    await d.deliver(boosted, event('job-tier-3', 'done', { images: one(bytes) }));
    const posts = channelPosts(interaction.channel_id).slice(before);
    expect(posts.map((r) => r.status)).toEqual([200]);
    expect(posts[0]!.files[0]!.bytes.equals(bytes)).toBe(true);
  });

  it('a thread without Send Messages in Threads: a clear log, and the answer through the token while it lives', async () => {
    const thread = fake.addThread({
      parentId: '700000000000000001',
      botPermissions: PERMISSIONS.viewChannel | PERMISSIONS.sendMessages | PERMISSIONS.attachFiles,
    });
    const { logger, lines } = capturedLogger();
    const d = deliverer({ logger });
    // 14 min 45 s: past the safety margin (so the channel is tried first), the token still alive.
    const { interaction, target } = deferred('thread art', {
      channelId: thread.id,
      issuedAt: Date.now() - (14 * 60 + 45) * 1000,
    });
    const image = await demoImage('thread art', 2);
    await d.deliver(target, event('job-thread', 'done', { images: one(image.bytes) }));
    expect(channelPosts(thread.id).map((r) => [r.status, r.body])).toMatchObject([[403, {}]]);
    const edit = fake.find(isEdit(interaction.token)).at(-1)!;
    expect(edit.status).toBe(200);
    expect(edit.files).toHaveLength(1);
    expect(fake.original(interaction.token)?.attachments).toHaveLength(1);
    expect(lines().join('')).toMatch(/may not post in channel .*Send Messages in Threads/);
  });

  it('the same refusal after the token died: DELIVERY_FAILED with a clear log, no webhook call', async () => {
    const thread = fake.addThread({
      parentId: '700000000000000001',
      botPermissions: PERMISSIONS.viewChannel,
    });
    const { logger, lines } = capturedLogger();
    const d = deliverer({ logger });
    const { interaction, target } = deferred('too late', {
      channelId: thread.id,
      issuedAt: Date.now() - 16 * 60 * 1000,
    });
    const image = await demoImage('too late', 3);
    await expect(
      d.deliver(
        target,
        event('job-thread-late', 'done', {
          images: one(image.bytes),
        }),
      ),
    ).rejects.toMatchObject({ code: 'DELIVERY_FAILED' });
    expect(fake.find(isEdit(interaction.token))).toEqual([]);
    expect(lines().join('')).toMatch(/may not post in channel/);
  });

  it('tokens die 15 minutes after the interaction on Discord’s clock, whatever ours says', async () => {
    const d = deliverer();
    const { interaction, target } = deferred('clock skew');
    fake.advance(TOKEN_LIFETIME_MS + 1000);
    try {
      const image = await demoImage('clock skew', 4);
      await d.deliver(target, event('job-clock', 'done', { images: one(image.bytes) }));
    } finally {
      fake.advance(-(TOKEN_LIFETIME_MS + 1000));
    }
    expect(fake.find(isEdit(interaction.token)).map((r) => r.status)).toEqual([401]);
    expect(channelPosts(interaction.channel_id).at(-1)?.status).toBe(200);
  });

  it('per-route buckets: the client waits on X-RateLimit-* headers and never overruns one', async () => {
    const strict = await startFakeDiscord({ routeLimit: { limit: 2, windowMs: 500 } });
    try {
      const d = new DiscordDeliverer({
        api: new DiscordApi({ apiUrl: strict.apiUrl, token: strict.botToken }),
        logger: pino({ level: 'silent' }),
        statusIntervalMs: 0,
      });
      const interaction = strict.commandInteraction({ prompt: 'many edits' });
      strict.acknowledge(interaction.token, { type: 5 });
      const target: DiscordTarget = {
        platform: 'discord',
        applicationId: strict.applicationId,
        interactionToken: interaction.token,
        issuedAt: Date.now(),
        userId: '1',
      };
      for (let position = 6; position >= 0; position--)
        await d.deliver(target, event('job-buckets', 'queued', { position }));
      const edits = strict.find(isEdit(interaction.token));
      expect(edits.map((r) => r.status)).toEqual(Array(7).fill(200));
      expect(strict.overruns).toEqual([]);
    } finally {
      await strict.close();
    }
  });

  it('the global limit: a 429 with "global": true holds every bot-token request until it ends', async () => {
    const strict = await startFakeDiscord();
    try {
      const api = new DiscordApi({ apiUrl: strict.apiUrl, token: strict.botToken });
      strict.rateLimitGloballyNext(1);
      const limited = new Promise<{ global: boolean }>((resolve) =>
        api.rest.once(RESTEvents.RateLimited, resolve),
      );
      const first = api.channelMessage('610000000000000001', { content: 'first' });
      expect(await limited).toMatchObject({ global: true });
      // Once told, the client holds requests to other routes too, until the limit ends.
      const others = ['610000000000000002', '610000000000000003'].map((id) =>
        api.channelMessage(id, { content: `to ${id}` }),
      );
      await Promise.all([first, ...others]);
      const posts = strict.find((r) => r.method === 'POST' && r.path.endsWith('/messages'));
      expect(posts.map((r) => r.status)).toEqual([429, 200, 200, 200]);
      expect(strict.overruns).toEqual([]);
    } finally {
      await strict.close();
    }
  });

  it('the global limit (the fake): the 51st bot-token request in a second is refused globally; webhooks are not bound', async () => {
    const strict = await startFakeDiscord({ routeLimit: { limit: 100, windowMs: 1000 } });
    try {
      const interaction = strict.commandInteraction({ prompt: 'global' });
      strict.acknowledge(interaction.token, { type: 5 });
      const post = (i: number) =>
        fetch(
          `${strict.apiUrl}/v10/channels/63000000000000${String(i).padStart(4, '0')}/messages`,
          {
            method: 'POST',
            headers: {
              authorization: `Bot ${strict.botToken}`,
              'content-type': 'application/json',
            },
            body: JSON.stringify({ content: 'hi' }),
          },
        );
      const answers = [];
      for (let i = 0; i < 51; i++) answers.push(await post(i));
      const refused = answers.filter((r) => r.status === 429);
      expect(refused).toHaveLength(1);
      expect(refused[0]!.headers.get('x-ratelimit-global')).toBe('true');
      expect(refused[0]!.headers.get('x-ratelimit-scope')).toBe('global');
      expect(Number(refused[0]!.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(await refused[0]!.json()).toMatchObject({
        global: true,
        retry_after: expect.any(Number),
      });
      // The interaction's webhook goes without the bot token: not bound by the global limit.
      const edit = await fetch(
        `${strict.apiUrl}/v10/webhooks/${strict.applicationId}/${interaction.token}/messages/@original`,
        {
          method: 'PATCH',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ content: 'still editable' }),
        },
      );
      expect(edit.status).toBe(200);
    } finally {
      await strict.close();
    }
  });

  it('the global limit: 60 bot-token requests at once are spaced by the client, none refused', async () => {
    const strict = await startFakeDiscord({
      globalPerSecond: 50,
      routeLimit: { limit: 100, windowMs: 1000 },
    });
    try {
      const api = new DiscordApi({ apiUrl: strict.apiUrl, token: strict.botToken });
      await Promise.all(
        Array.from({ length: 60 }, (_, i) =>
          api.channelMessage(`62000000000000${String(i).padStart(4, '0')}`, { content: 'hi' }),
        ),
      );
      const posts = strict.find((r) => r.method === 'POST' && r.path.endsWith('/messages'));
      expect(posts.filter((r) => r.status === 200)).toHaveLength(60);
      expect(strict.overruns).toEqual([]);
    } finally {
      await strict.close();
    }
  });
});

describe('Discord HTTP interactions: the 3 s initial response', () => {
  it('a handler slower than 3 s is deferred in time, and its answer follows', async () => {
    const fake = await startFakeDiscord();
    const signer = discordSigner();
    const slow: SlashCommand = {
      data: { name: 'imagine', description: 'slow' },
      async execute(ctx) {
        await new Promise((r) => setTimeout(r, 3500));
        await tellEphemeral(ctx, 'done at last', { keepOriginal: true });
      },
    };
    const adapter = createDiscordAdapter({
      publicKey: signer.publicKeyHex,
      apiUrl: fake.apiUrl,
      logger: pino({ level: 'silent' }),
      routes: routesOf([slow], []),
    });
    const app = await startTestImagine({}, { adapters: [adapter] });
    try {
      const interaction = fake.commandInteraction({ prompt: 'slow' });
      const res = await fake.postInteraction(`${app.url}/discord/interactions`, interaction, (b) =>
        signer.headers(b),
      );
      expect(res).toMatchObject({ status: 200, timedOut: false, body: { type: 5 } });
      const answer = await fake.waitFor(
        (r) => r.method === 'POST' && r.path.endsWith(interaction.token),
      );
      expect(answer.status).toBe(200);
    } finally {
      await app.stop();
      await fake.close();
    }
  });

  it('the fake cuts a response later than 3 s: the token never becomes a webhook', async () => {
    const fake = await startFakeDiscord();
    const { createServer } = await import('node:http');
    const server = createServer((_req, res) => {
      setTimeout(() => res.end('{"type":5}'), 3500);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as { port: number };
    try {
      const interaction = fake.commandInteraction({ prompt: 'too slow' });
      const res = await fake.postInteraction(`http://127.0.0.1:${port}/`, interaction, () => ({}));
      expect(res.timedOut).toBe(true);
      const api = new DiscordApi({ apiUrl: fake.apiUrl });
      await expect(
        api.editMessage(fake.applicationId, interaction.token, '@original', { content: 'x' }),
      ).rejects.toMatchObject({ status: 404, code: 10015 });
    } finally {
      server.closeAllConnections();
      server.close();
      await fake.close();
    }
  });
});
