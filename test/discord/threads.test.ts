import type { APIChatInputApplicationCommandInteraction } from 'discord.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BOT_PERMISSIONS } from '../../bot/discord/register.ts';
import { discordSigner, isImageEdit } from '../fakes/discord/harness.ts';
import { type FakeDiscord, PERMISSIONS, startFakeDiscord } from '../fakes/discord/server.ts';
import { startTestImagine } from '../helpers/imagine.ts';

const MANAGE_GUILD = String(1n << 5n);
const ART = '700000000000000001';
const GENERAL = '700000000000000002';

describe('Discord threads: channel rules follow the parent channel', () => {
  let fake: FakeDiscord;
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  const signer = discordSigner();
  const endpoint = () => `${app.url}/discord/interactions`;

  beforeAll(async () => {
    fake = await startFakeDiscord();
    app = await startTestImagine({
      DISCORD_PUBLIC_KEY: signer.publicKeyHex,
      DISCORD_API_URL: fake.apiUrl,
    });
  });
  afterAll(async () => {
    await app?.stop();
    await fake?.close();
  });

  async function admin(sub: string, channel: string): Promise<void> {
    const base = fake.commandInteraction({ prompt: 'unused', channelId: ART });
    const interaction = {
      ...base,
      member: { ...base.member!, permissions: MANAGE_GUILD },
      data: {
        ...base.data,
        name: 'imagine-admin',
        options: [
          {
            name: 'channels',
            type: 2,
            options: [
              { name: sub, type: 1, options: [{ name: 'channel', type: 7, value: channel }] },
            ],
          },
        ],
      },
    } as unknown as APIChatInputApplicationCommandInteraction;
    const res = await fake.postInteraction(endpoint(), interaction, (b) => signer.headers(b));
    expect(res.status).toBe(200);
  }

  async function clear(): Promise<void> {
    const base = fake.commandInteraction({ prompt: 'unused', channelId: ART });
    const interaction = {
      ...base,
      member: { ...base.member!, permissions: MANAGE_GUILD },
      data: {
        ...base.data,
        name: 'imagine-admin',
        options: [{ name: 'channels', type: 2, options: [{ name: 'clear', type: 1 }] }],
      },
    };
    await fake.postInteraction(endpoint(), interaction, (b) => signer.headers(b));
  }

  /** /imagine in a channel; resolves with 'admitted' or the refusal the user was shown. */
  async function imagineIn(channelId: string): Promise<string> {
    const interaction = fake.commandInteraction({
      prompt: 'a fox in a thread',
      channelId,
      seed: 9,
    });
    const res = await fake.postInteraction(endpoint(), interaction, (b) => signer.headers(b));
    expect(res.body).toMatchObject({ type: 5 });
    const outcome = await fake.waitFor(
      (r) =>
        r.path.includes(interaction.token) &&
        ((r.method === 'POST' && r.path.endsWith(interaction.token)) ||
          isImageEdit(interaction.token)(r)),
    );
    return outcome.method === 'POST' ? String(outcome.body?.content) : 'admitted';
  }

  it('a denied channel is denied in its threads; other threads are not', async () => {
    const artThread = fake.addThread({ parentId: ART });
    const generalThread = fake.addThread({ parentId: GENERAL });
    await admin('deny', ART);
    try {
      expect(await imagineIn(artThread.id)).toMatch(/not enabled in this channel/);
      expect(await imagineIn(generalThread.id)).toBe('admitted');
    } finally {
      await clear();
    }
  });

  it('an allowed channel is allowed in its threads (private ones too); the rest are refused', async () => {
    const artThread = fake.addThread({ parentId: ART, type: 12 });
    const generalThread = fake.addThread({ parentId: GENERAL });
    await admin('allow', ART);
    try {
      expect(await imagineIn(artThread.id)).toBe('admitted');
      expect(await imagineIn(generalThread.id)).toMatch(/not enabled in this channel/);
    } finally {
      await clear();
    }
  });

  it('the result is delivered into the thread itself', async () => {
    const thread = fake.addThread({ parentId: ART });
    const interaction = fake.commandInteraction({ prompt: 'thread art', channelId: thread.id });
    await fake.postInteraction(endpoint(), interaction, (b) => signer.headers(b));
    await fake.waitFor(isImageEdit(interaction.token));
    expect(fake.original(interaction.token)?.channel_id).toBe(thread.id);
  });

  it('the invite asks for Send Messages in Threads, which late posts in threads need', () => {
    expect(BOT_PERMISSIONS & PERMISSIONS.sendMessagesInThreads).toBe(
      PERMISSIONS.sendMessagesInThreads,
    );
  });
});
