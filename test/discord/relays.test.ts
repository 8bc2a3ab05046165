import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { GatedGenerator, isEdit, isImageEdit } from '../fakes/discord/harness.ts';
import { type FakeDiscord, startFakeDiscord } from '../fakes/discord/server.ts';
import { startTestImagine } from '../helpers/imagine.ts';

type Imagine = Awaited<ReturnType<typeof startTestImagine>>;

describe('Discord gateway with two relays: exactly one answers each interaction', () => {
  let fake: FakeDiscord | undefined;
  const apps: Imagine[] = [];
  const generator = new GatedGenerator();

  afterEach(async () => {
    generator.release();
    for (const app of apps.splice(0)) await app.stop();
    await fake?.close();
  });

  async function twoRelays(env: Record<string, string> = {}): Promise<FakeDiscord> {
    fake = await startFakeDiscord();
    const base = { DISCORD_TOKEN: fake.botToken, DISCORD_API_URL: fake.apiUrl, ...env };
    apps.push(await startTestImagine(base, { generator }));
    apps.push(await startTestImagine(base, { generator }));
    // Discord sends every interaction to every session of the shard.
    expect(fake.identified).toHaveLength(2);
    return fake;
  }

  const callbacks = (f: FakeDiscord, id: string) =>
    f.find((r) => r.path.includes(`/interactions/${id}/`));

  it('sharing Redis: one relay claims the interaction, the other never answers it', async () => {
    const f = await twoRelays({
      REDIS_URL: inject('redisUrl'),
      REDIS_KEY_PREFIX: `test-discord-relays-${randomBytes(4).toString('hex')}:`,
    });
    for (const prompt of ['one of two', 'two of two', 'three of two']) {
      const interaction = f.commandInteraction({ prompt, seed: 4, count: 1 });
      f.dispatch(interaction);
      await f.waitFor(isImageEdit(interaction.token));
      expect(callbacks(f, interaction.id).map((r) => [r.status, r.body?.type])).toEqual([[204, 5]]);
      expect(f.find(isImageEdit(interaction.token))).toHaveLength(1);
      expect(f.original(interaction.token)?.attachments).toHaveLength(1);
    }
  });

  it('without Redis both answer: the loser’s 40060 deletes nothing, and the winner delivers', async () => {
    const f = await twoRelays();
    const interaction = f.commandInteraction({ prompt: 'a race for the reply', seed: 5, count: 1 });
    f.dispatch(interaction);
    await f.waitFor(isImageEdit(interaction.token));
    const answers = callbacks(f, interaction.id);
    expect(answers.map((r) => r.status).sort()).toEqual([204, 400]);
    // Both callbacks are in: from here the loser has had its chance to do harm.
    const token = interaction.token;
    expect(f.find((r) => r.method === 'DELETE' && r.path.includes(token))).toEqual([]);
    expect(f.find((r) => r.method === 'POST' && r.path.endsWith(token))).toEqual([]);
    expect(f.find(isEdit(token)).filter((r) => r.status === 404)).toEqual([]);
    const message = f.original(token)!;
    expect(message.deleted).toBe(false);
    expect(message.attachments).toHaveLength(1);
  });
});
