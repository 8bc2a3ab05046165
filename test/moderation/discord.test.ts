import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { APIChatInputApplicationCommandInteraction } from 'discord.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { slashCommands } from '../../bot/discord/commands/index.ts';
import { asModeration } from '../../moderation/index.ts';
import { discordSigner } from '../fakes/discord/harness.ts';
import { type FakeDiscord, startFakeDiscord } from '../fakes/discord/server.ts';
import { startTestImagine } from '../helpers/imagine.ts';

const MANAGE_GUILD = String(1n << 5n);
// View channel, send messages, use application commands: an ordinary member.
const MEMBER = String((1n << 10n) | (1n << 11n) | (1n << 31n));
const GUILD = '600000000000000001';
const ART = '700000000000000001';
const GENERAL = '700000000000000002';

type Opt = { name: string; type: number; value?: unknown; options?: Opt[] };

describe('Discord /imagine-admin and /imagine-quota end to end (HTTP interactions, fake Discord)', () => {
  let fake: FakeDiscord;
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  let dataDir: string;
  const signer = discordSigner();

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'imagine-discord-mod-'));
    fake = await startFakeDiscord();
    app = await startTestImagine(
      {
        DISCORD_PUBLIC_KEY: signer.publicKeyHex,
        DISCORD_API_URL: fake.apiUrl,
        DATA_DIR: dataDir,
        LIMIT_IMAGES_PER_USER: '10',
      },
      { role: 'relay' },
    );
  });
  afterAll(async () => {
    await app?.stop();
    await fake?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const policy = () => asModeration(app.relay!.relay.admission)!;
  const scope = `discord:${GUILD}`;

  /** POST a signed slash command as `userId` with `permissions`; the initial response comes back. */
  async function command(
    name: string,
    options: Opt[],
    who: { userId?: string; permissions: string; channelId?: string },
  ): Promise<{ type: number; data?: { content?: string; flags?: number } }> {
    const base = fake.commandInteraction({
      prompt: 'unused',
      userId: who.userId ?? '500000000000000001',
      channelId: who.channelId ?? ART,
    });
    const interaction = {
      ...base,
      member: { ...base.member!, permissions: who.permissions },
      data: { ...base.data, name, options },
    } as unknown as APIChatInputApplicationCommandInteraction;
    const res = await fake.postInteraction(`${app.url}/discord/interactions`, interaction, (body) =>
      signer.headers(body),
    );
    expect(res.status).toBe(200);
    return res.body as { type: number; data?: { content?: string; flags?: number } };
  }
  const set = (options: Opt[]): Opt[] => [{ name: 'set', type: 1, options }];

  it('registers /imagine-admin for Manage Server only, in servers, beside /imagine-quota', () => {
    const admin = slashCommands.find((c) => c.data.name === 'imagine-admin');
    expect(admin?.data.default_member_permissions).toBe(MANAGE_GUILD);
    expect(admin?.data.contexts).toEqual([0]);
    const subcommands = (admin?.data.options ?? []).map((o) => o.name);
    expect(subcommands).toEqual(['show', 'set', 'words', 'channels']);
    expect(slashCommands.map((c) => c.data.name)).toContain('imagine-quota');
  });

  it('refuses a member without Manage Server even though the command reached the bot', async () => {
    const answer = await command(
      'imagine-admin',
      set([{ name: 'per_user', type: 4, value: 1000 }]),
      {
        permissions: MEMBER,
      },
    );
    expect(answer.type).toBe(4);
    expect(answer.data?.flags).toBe(64);
    expect((await policy().settingsOf(scope)).limits).toEqual({});
    expect(await policy().store.audit(scope, 5)).toEqual([]);
  });

  it('Manage Messages moderates jobs, not settings: /imagine-admin stays Manage Server’s', async () => {
    const answer = await command(
      'imagine-admin',
      set([{ name: 'per_user', type: 4, value: 1000 }]),
      { permissions: String(BigInt(MEMBER) | (1n << 13n)) },
    );
    expect(answer.type).toBe(4);
    expect(answer.data?.flags).toBe(64);
    expect((await policy().settingsOf(scope)).limits).toEqual({});
  });

  it('a moderator sets limits (ephemeral answer), and show lists the change with who made it', async () => {
    const answer = await command(
      'imagine-admin',
      set([
        { name: 'per_user', type: 4, value: 1 },
        { name: 'window', type: 3, value: '2h' },
      ]),
      { userId: '500000000000000009', permissions: MANAGE_GUILD },
    );
    expect(answer.data?.flags).toBe(64);
    expect((await policy().settingsOf(scope)).limits).toEqual({
      imagesPerUser: 1,
      windowSeconds: 7200,
    });
    const shown = await command('imagine-admin', [{ name: 'show', type: 1 }], {
      permissions: String(1n << 3n),
    });
    expect(shown.data?.flags).toBe(64);
    expect(shown.data?.content).toContain('(500000000000000009): limits: per_user=1 window=2 h');
  });

  it('a malformed value is refused, and nothing changes', async () => {
    const answer = await command(
      'imagine-admin',
      set([{ name: 'window', type: 3, value: 'soon' }]),
      {
        permissions: MANAGE_GUILD,
      },
    );
    expect(answer.data?.flags).toBe(64);
    expect((await policy().settingsOf(scope)).limits.windowSeconds).toBe(7200);
  });

  it('/imagine-quota answers privately; /imagine spends the quota and the next one is refused', async () => {
    const before = await command('imagine-quota', [], { permissions: MEMBER });
    expect(before.data?.flags).toBe(64);
    expect(before.data?.content).toContain('You have 1 of your 1 image per 2 hours left.');
    const tracker = app.relay!.relay.tracker;
    const size = tracker.size;
    // One image each: the quota here is 1 image.
    const imagine = async (prompt: string) => {
      const interaction = fake.commandInteraction({ prompt, count: 1 });
      await fake.postInteraction(`${app.url}/discord/interactions`, interaction, (body) =>
        signer.headers(body),
      );
      return interaction.token;
    };
    await imagine('a fox in space');
    await expect.poll(() => tracker.size).toBe(size + 1);
    const refused = await imagine('a hare in space');
    // The refusal is a private follow-up on that interaction's token; nothing was queued.
    await expect
      .poll(() =>
        fake.requests.find(
          (r) =>
            r.method === 'POST' &&
            decodeURIComponent(r.path).includes(refused) &&
            r.body?.flags === 64,
        ),
      )
      .toBeDefined();
    expect(tracker.size).toBe(size + 1);
    const after = await command('imagine-quota', [], { permissions: MEMBER });
    expect(after.data?.content).toContain('You have used your 1 image per 2 hours.');
  });

  it('words and channels subcommand groups change what /imagine accepts', async () => {
    const mod = { permissions: MANAGE_GUILD };
    await command(
      'imagine-admin',
      [
        {
          name: 'words',
          type: 2,
          options: [
            {
              name: 'add',
              type: 1,
              options: [{ name: 'words', type: 3, value: 'Kraken, sea monster' }],
            },
          ],
        },
      ],
      mod,
    );
    await command(
      'imagine-admin',
      [
        {
          name: 'channels',
          type: 2,
          options: [
            { name: 'deny', type: 1, options: [{ name: 'channel', type: 7, value: GENERAL }] },
          ],
        },
      ],
      mod,
    );
    const s = await policy().settingsOf(scope);
    expect(s.blockedWords).toEqual(['kraken', 'sea monster']);
    expect(s.deniedChannels).toEqual([GENERAL]);
    await command(
      'imagine-admin',
      [{ name: 'channels', type: 2, options: [{ name: 'clear', type: 1 }] }],
      mod,
    );
    expect((await policy().settingsOf(scope)).deniedChannels).toEqual([]);
    expect((await policy().store.audit(scope, 10)).map((e) => e.action)).toEqual([
      'channels clear',
      `channels deny <#${GENERAL}>`,
      'words add: kraken, sea monster',
      'limits: per_user=1 window=2 h',
    ]);
  });
});
