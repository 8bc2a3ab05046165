import type { APIChatInputApplicationCommandInteraction } from 'discord.js';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DiscordApi } from '../../bot/discord/api.ts';
import { registerCommands } from '../../bot/discord/register.ts';
import type { Job } from '../../contracts/job.ts';
import type { FakeA1111 } from '../fakes/a1111.ts';
import { discordSigner } from '../fakes/discord/harness.ts';
import { type FakeDiscord, startFakeDiscord } from '../fakes/discord/server.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { type ModelBoxes, startModelBoxes } from '../helpers/model-boxes.ts';

const MANAGE_GUILD = String(1n << 5n);
const MEMBER = String((1n << 10n) | (1n << 11n) | (1n << 31n));
type Opt = { name: string; type: number; value?: unknown; options?: Opt[] };
type Answer = { type: number; data?: { content?: string; flags?: number } };

describe('Discord /imagine model option, restricted per server by /imagine-admin (HTTP interactions, two A1111 fakes)', () => {
  let fake: FakeDiscord;
  let boxes: ModelBoxes;
  let flux: FakeA1111;
  let sdxl: FakeA1111;
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  const signer = discordSigner();
  const txt2img = (box: FakeA1111) => boxes.txt2img(box);
  const checkpoint = (s: { body: unknown }) =>
    (s.body as { override_settings?: { sd_model_checkpoint?: string } }).override_settings
      ?.sd_model_checkpoint;

  beforeAll(async () => {
    fake = await startFakeDiscord();
    boxes = await startModelBoxes('discord-models');
    ({ flux, sdxl } = boxes);
    app = await startTestImagine({
      DISCORD_PUBLIC_KEY: signer.publicKeyHex,
      DISCORD_API_URL: fake.apiUrl,
      ...boxes.env,
    });
  });
  afterAll(async () => {
    await app?.stop();
    await fake?.close();
    await boxes?.close();
  });

  async function post(
    name: string,
    options: Opt[],
    permissions = MEMBER,
  ): Promise<{ answer: Answer; token: string }> {
    const base = fake.commandInteraction({ prompt: 'unused' });
    const interaction = {
      ...base,
      member: { ...base.member!, permissions },
      data: { ...base.data, name, options },
    } as unknown as APIChatInputApplicationCommandInteraction;
    const res = await fake.postInteraction(`${app.url}/discord/interactions`, interaction, (body) =>
      signer.headers(body),
    );
    expect(res.status).toBe(200);
    return { answer: res.body as Answer, token: interaction.token };
  }
  const imagine = (prompt: string, model?: string) =>
    post('imagine', [
      { name: 'prompt', type: 3, value: prompt },
      ...(model === undefined ? [] : [{ name: 'model', type: 3, value: model }]),
    ]);
  const jobsSeen = () => {
    const spy = vi.spyOn(app.relay!.relay.tracker, 'registerQueued');
    return (prompt: string) =>
      spy.mock.calls.map(([j]) => j as Job).find((j) => j.prompt === prompt);
  };

  it('registers `model` with the configured models as choices', async () => {
    const api = new DiscordApi({ apiUrl: fake.apiUrl, token: fake.botToken });
    await registerCommands({
      api,
      guildId: '600000000000000077',
      models: ['flux1-schnell', 'sdxl-base', 'sd-turbo'],
    });
    const stored = fake.commands.get('guild:600000000000000077') as Array<{
      name: string;
      options: Array<{ name: string; choices?: Array<{ name: string; value: string }> }>;
    }>;
    const model = stored.find((c) => c.name === 'imagine')!.options.find((o) => o.name === 'model');
    expect(model?.choices?.map((c) => c.value)).toEqual(['flux1-schnell', 'sdxl-base', 'sd-turbo']);
    const admin = stored
      .find((c) => c.name === 'imagine-admin')!
      .options.find((o) => o.name === 'set') as unknown as { options: Array<{ name: string }> };
    expect(admin.options.map((o) => o.name)).toContain('models');
  });

  it('the chosen model reaches the job and the backend offering it', async () => {
    const job = jobsSeen();
    const { answer } = await imagine('a red fox', 'sd-turbo');
    expect(answer.type).toBe(5);
    await expect.poll(() => job('a red fox')).toMatchObject({ model: 'sd-turbo' });
    await expect
      .poll(() => txt2img(sdxl).map(checkpoint), { timeout: 20_000 })
      .toEqual(['sd-turbo']);
    expect(txt2img(flux)).toHaveLength(0);
  });

  it('a moderator restricts the server; a disallowed model is then refused privately with the list, and no job is made', async () => {
    const { answer: set } = await post(
      'imagine-admin',
      [
        {
          name: 'set',
          type: 1,
          options: [{ name: 'models', type: 3, value: 'sdxl-base, sd-turbo' }],
        },
      ],
      MANAGE_GUILD,
    );
    expect(set.data?.flags).toBe(64);
    expect(set.data?.content).toContain('models=sdxl-base,sd-turbo');

    const job = jobsSeen();
    const { token } = await imagine('a blue hare', 'flux1-schnell');
    await expect
      .poll(() => fake.followUps(token).map((m) => m.content))
      .toEqual([
        '✋ model flux1-schnell is not allowed here; choose one of sdxl-base, sd-turbo. Fix that and run /imagine again.',
      ]);
    expect(fake.followUps(token)[0]?.flags).toBe(64);
    expect(job('a blue hare')).toBeUndefined();
    expect(txt2img(flux)).toHaveLength(0);
  });

  it('without a model the server’s first allowed one is used, since the offered default is not allowed', async () => {
    const job = jobsSeen();
    await imagine('a green owl');
    await expect.poll(() => job('a green owl')).toMatchObject({ model: 'sdxl-base' });
    await expect
      .poll(() => txt2img(sdxl).map(checkpoint), { timeout: 20_000 })
      .toContain('sdxl-base');
    expect(txt2img(flux)).toHaveLength(0);
  });

  it('a model name that is not one is refused before deferring', async () => {
    const { answer } = await imagine('a cat', '../../etc');
    expect(answer.type).toBe(4);
    expect(answer.data?.flags).toBe(64);
    expect(answer.data?.content).toContain('model must be a model name');
  });
});
