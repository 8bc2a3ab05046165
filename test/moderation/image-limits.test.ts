/**
 * Limits count images, not jobs, and `/imagine` makes 4 by default, capped by the server's
 * `max_images`: end to end through Discord (HTTP interactions, fake Discord) and the web page.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { APIChatInputApplicationCommandInteraction } from 'discord.js';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Job } from '../../contracts/job.ts';
import { asModeration } from '../../moderation/index.ts';
import { discordSigner } from '../fakes/discord/harness.ts';
import { type FakeDiscord, startFakeDiscord } from '../fakes/discord/server.ts';
import { startTestImagine } from '../helpers/imagine.ts';

const MANAGE_GUILD = String(1n << 5n);
const MEMBER = String((1n << 10n) | (1n << 11n) | (1n << 31n));
const GUILD = '600000000000000001';

type Opt = { name: string; type: number; value?: unknown; options?: Opt[] };

describe('images, not jobs, against the limits (Discord and the web page)', () => {
  let fake: FakeDiscord;
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  let dataDir: string;
  const signer = discordSigner();
  let queued: () => Job[];

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'imagine-image-limits-'));
    fake = await startFakeDiscord();
    app = await startTestImagine(
      {
        DISCORD_PUBLIC_KEY: signer.publicKeyHex,
        DISCORD_API_URL: fake.apiUrl,
        DATA_DIR: dataDir,
        LIMIT_IMAGES_PER_USER: '6',
      },
      { role: 'relay' },
    );
    const spy = vi.spyOn(app.relay!.relay.tracker, 'registerQueued');
    queued = () => spy.mock.calls.map(([job]) => job as Job);
  });
  afterAll(async () => {
    await app?.stop();
    await fake?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  /** POST a signed slash command; the initial response comes back with the interaction token. */
  async function command(
    name: string,
    options: Opt[],
    who: { userId: string; permissions?: string },
  ): Promise<{
    answer: { type: number; data?: { content?: string; flags?: number } };
    token: string;
  }> {
    const base = fake.commandInteraction({ prompt: 'unused', userId: who.userId, guildId: GUILD });
    const interaction = {
      ...base,
      member: { ...base.member!, permissions: who.permissions ?? MEMBER },
      data: { ...base.data, name, options },
    } as unknown as APIChatInputApplicationCommandInteraction;
    const res = await fake.postInteraction(`${app.url}/discord/interactions`, interaction, (body) =>
      signer.headers(body),
    );
    expect(res.status).toBe(200);
    return { answer: res.body as never, token: interaction.token };
  }
  const imagine = (userId: string, prompt: string, count?: number) =>
    command(
      'imagine',
      [
        { name: 'prompt', type: 3, value: prompt },
        ...(count === undefined ? [] : [{ name: 'count', type: 4, value: count }]),
      ],
      { userId },
    );
  /** The private follow-up (flags 64) a deferred /imagine was answered with. */
  const privateAnswer = (token: string) =>
    fake.waitFor(
      (r) =>
        r.method === 'POST' && decodeURIComponent(r.path).includes(token) && r.body?.flags === 64,
    );

  it('a request naming no count makes 4; with 6 images left, a second 4 is refused, naming the 2 left', async () => {
    const user = '500000000000000021';
    await imagine(user, 'four foxes');
    await expect.poll(() => queued().filter((j) => j.prompt === 'four foxes')).toHaveLength(1);
    expect(queued().find((j) => j.prompt === 'four foxes')!.count).toBe(4);

    const { token } = await imagine(user, 'four more foxes');
    const refusal = await privateAnswer(token);
    expect(String(refusal.body?.content)).toMatch(
      /asks for 4 images and you have 2 of your 6 images per hour left here; ask for 2 or fewer/,
    );
    expect(queued().filter((j) => j.prompt === 'four more foxes')).toEqual([]);
    // The 2 left are still there: asking for 2 fits.
    await imagine(user, 'two foxes', 2);
    await expect.poll(() => queued().filter((j) => j.prompt === 'two foxes')).toHaveLength(1);
    const quota = await asModeration(app.relay!.relay.admission)!.quota({
      platform: 'discord',
      scopeId: GUILD,
      userId: user,
      channelId: '700000000000000001',
    });
    expect(quota.user).toMatchObject({ limit: 6, used: 6, remaining: 0 });
  });

  it('a server set to max_images=2 caps a user default of 4 to 2; a request for 3 is refused privately, saying why', async () => {
    const user = '500000000000000022';
    const set = await command(
      'imagine-admin',
      [{ name: 'set', type: 1, options: [{ name: 'max_images', type: 4, value: 2 }] }],
      { userId: '500000000000000009', permissions: MANAGE_GUILD },
    );
    expect(set.answer.data?.flags).toBe(64);
    const mine = await command('imagine-settings', [{ name: 'images', type: 4, value: 4 }], {
      userId: user,
    });
    expect(mine.answer.data?.flags).toBe(64);

    await imagine(user, 'capped foxes');
    await expect.poll(() => queued().filter((j) => j.prompt === 'capped foxes')).toHaveLength(1);
    expect(queued().find((j) => j.prompt === 'capped foxes')!.count).toBe(2);

    const { token } = await imagine(user, 'three foxes', 3);
    const refusal = await privateAnswer(token);
    expect(String(refusal.body?.content)).toMatch(
      /at most 2 images per request here \(asked for 3\)/,
    );
    expect(queued().filter((j) => j.prompt === 'three foxes')).toEqual([]);
  });

  it('the web page: no count means 4; over the site’s max_images is a 400 that says so', async () => {
    const post = (body: unknown) =>
      fetch(`${app.url}/enqueue`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const res = await post({ prompt: 'a web fox' });
    expect(res.status).toBe(202);
    expect(queued().find((j) => j.prompt === 'a web fox')!.count).toBe(4);

    await asModeration(app.relay!.relay.admission)!.change(
      'web:web',
      { kind: 'limits', changes: { maxImagesPerJob: 2 } },
      { at: Date.now(), actorId: 'test', action: 'max_images=2' },
    );
    const over = await post({ prompt: 'three web foxes', count: 3 });
    expect(over.status).toBe(400);
    const body = (await over.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('INVALID_PARAMETERS');
    expect(body.error.message).toMatch(/at most 2 images per request here \(asked for 3\)/);
    expect(queued().filter((j) => j.prompt === 'three web foxes')).toEqual([]);
  });
});
