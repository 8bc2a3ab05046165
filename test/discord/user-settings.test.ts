import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { APIChatInputApplicationCommandInteraction } from 'discord.js';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { slashCommands } from '../../bot/discord/commands/index.ts';
import { discordSigner } from '../fakes/discord/harness.ts';
import { type FakeDiscord, startFakeDiscord } from '../fakes/discord/server.ts';
import { startTestImagine } from '../helpers/imagine.ts';

type Opt = { name: string; type: number; value?: unknown };
type Answer = { type: number; data?: { content?: string; flags?: number } };

describe('Discord /imagine-settings (HTTP interactions, fake Discord, embedded store)', () => {
  let fake: FakeDiscord;
  let dataDir: string;
  const signer = discordSigner();
  const start = () =>
    startTestImagine(
      { DISCORD_PUBLIC_KEY: signer.publicKeyHex, DISCORD_API_URL: fake.apiUrl, DATA_DIR: dataDir },
      { role: 'relay' },
    );
  let app: Awaited<ReturnType<typeof start>>;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'imagine-discord-settings-'));
    fake = await startFakeDiscord();
    app = await start();
  });
  afterAll(async () => {
    await app?.stop();
    await fake?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  async function post(interaction: unknown): Promise<Answer> {
    const res = await fake.postInteraction(
      `${app.url}/discord/interactions`,
      interaction as APIChatInputApplicationCommandInteraction,
      (body) => signer.headers(body),
    );
    expect(res.status).toBe(200);
    return res.body as Answer;
  }
  function settings(options: Opt[]): Promise<Answer> {
    const base = fake.commandInteraction({ prompt: 'unused' });
    return post({ ...base, data: { ...base.data, name: 'imagine-settings', options } });
  }

  it('is registered with its options', () => {
    const command = slashCommands.find((c) => c.data.name === 'imagine-settings');
    expect(command?.data.options?.map((o) => o.name)).toEqual([
      'aspect',
      'images',
      'steps',
      'vary',
      'visibility',
      'clear',
    ]);
  });

  it('saves the caller’s defaults privately; /imagine then uses them, answering only to them', async () => {
    const saved = await settings([
      { name: 'aspect', type: 3, value: '16:9' },
      { name: 'visibility', type: 3, value: 'private' },
    ]);
    expect(saved.type).toBe(4);
    expect(saved.data?.flags).toBe(64);
    expect(saved.data?.content).toContain('aspect: 16:9');
    expect(saved.data?.content).toContain('visibility: private');

    const queued = vi.spyOn(app.relay!.relay.tracker, 'registerQueued');
    const imagine = fake.commandInteraction({ prompt: 'a fox in space' });
    const deferred = await post(imagine);
    expect(deferred.type).toBe(5);
    expect(deferred.data?.flags).toBe(64);
    await expect
      .poll(() => queued.mock.calls.map(([job]) => job).find((j) => j.prompt === 'a fox in space'))
      .toMatchObject({ params: { width: 1344, height: 768 } });
  });

  it('still knows them after a restart, and clear all goes back to the server defaults', async () => {
    await app.stop();
    app = await start();
    const shown = await settings([]);
    expect(shown.data?.content).toContain('aspect: 16:9');
    const cleared = await settings([{ name: 'clear', type: 3, value: 'all' }]);
    expect(cleared.data?.content).toContain('aspect: server default');
    const deferred = await post(fake.commandInteraction({ prompt: 'a hare' }));
    expect(deferred.type).toBe(5);
    expect(deferred.data?.flags).toBeUndefined();
  });

  it('a bad value is said privately and changes nothing', async () => {
    const answer = await settings([{ name: 'images', type: 4, value: 9 }]);
    expect(answer.data?.flags).toBe(64);
    expect(answer.data?.content).toContain('images must be');
  });
});
