import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALREADY_HANDLED } from '../../bot/discord/http.ts';
import type { Submitter } from '../../submit/submit.ts';
import { discordSigner, isImageEdit } from '../fakes/discord/harness.ts';
import { type FakeDiscord, startFakeDiscord } from '../fakes/discord/server.ts';
import { startTestImagine } from '../helpers/imagine.ts';

type Imagine = Awaited<ReturnType<typeof startTestImagine>>;

/** Count what reaches the submit path (the one way to queue a job). */
function countSubmits(app: Imagine): { count: () => number } {
  const door = app.relay!.frontDoor;
  const inner: Submitter = door.submit;
  let n = 0;
  door.submit = (input) => {
    n += 1;
    return inner(input);
  };
  return { count: () => n };
}

describe('Discord HTTP interactions at the edge: replays and malformed payloads', () => {
  let fake: FakeDiscord;
  let app: Imagine;
  let submits: { count: () => number };
  const signer = discordSigner();
  const endpoint = () => `${app.url}/discord/interactions`;
  const sign = (b: string) => signer.headers(b);

  beforeAll(async () => {
    fake = await startFakeDiscord();
    app = await startTestImagine({
      DISCORD_PUBLIC_KEY: signer.publicKeyHex,
      DISCORD_API_URL: fake.apiUrl,
    });
    submits = countSubmits(app);
  });
  afterAll(async () => {
    await app?.stop();
    await fake?.close();
  });

  it('one signed interaction sent three times queues one job; the repeats are told so', async () => {
    const before = submits.count();
    const interaction = fake.commandInteraction({ prompt: 'sent thrice', seed: 21 });
    const raw = JSON.stringify(interaction);
    const answers = [];
    for (let i = 0; i < 3; i++) answers.push(await fake.postInteraction(endpoint(), raw, sign));
    expect(answers[0]).toMatchObject({ status: 200, body: { type: 5 } });
    for (const repeat of answers.slice(1))
      expect(repeat).toMatchObject({
        status: 200,
        body: { type: 4, data: { content: ALREADY_HANDLED, flags: 64 } },
      });
    await fake.waitFor(isImageEdit(interaction.token));
    expect(submits.count() - before).toBe(1);
  });

  const malformed: Array<[string, (i: Record<string, unknown>) => unknown, RegExp]> = [
    [
      'an integer option carrying a string',
      (i) => ({
        ...i,
        data: {
          ...(i.data as object),
          options: [
            { name: 'prompt', type: 3, value: 'a fox' },
            { name: 'seed', type: 4, value: 'forty-two' },
          ],
        },
      }),
      /data\.options\.1\.value/,
    ],
    [
      'a string option carrying an object',
      (i) => ({
        ...i,
        data: { ...(i.data as object), options: [{ name: 'prompt', type: 3, value: { $: 1 } }] },
      }),
      /data\.options\.0\.value/,
    ],
    [
      'options that are not a list',
      (i) => ({ ...i, data: { ...(i.data as object), options: 'x' } }),
      /data\.options/,
    ],
    ['a guild_id array', (i) => ({ ...i, guild_id: ['600000000000000001'] }), /guild_id/],
    ['a member without a user', (i) => ({ ...i, member: { permissions: '0' } }), /member\.user/],
    ['no token', (i) => ({ ...i, token: undefined }), /token/],
    ['an unknown interaction type', (i) => ({ ...i, type: 99 }), /type/],
    [
      'a channel id that is not a snowflake',
      (i) => ({ ...i, channel_id: '../../x' }),
      /channel_id/,
    ],
  ];

  it.each(malformed)('400 BAD_REQUEST for %s, and no job', async (_what, mutate, where) => {
    const before = submits.count();
    const interaction = fake.commandInteraction({ prompt: 'a fox', seed: 1 });
    const raw = JSON.stringify(mutate(interaction as unknown as Record<string, unknown>));
    const res = await fake.postInteraction(endpoint(), raw, sign);
    expect(res.status).toBe(400);
    const body = res.body as { error: { code: string; message: string } };
    expect(body.error.code).toBe('BAD_REQUEST');
    expect(body.error.message).toMatch(where);
    expect(submits.count()).toBe(before);
  });

  it('400 for a button click whose message is missing or whose custom_id is too long', async () => {
    const first = fake.commandInteraction({ prompt: 'a paper boat', seed: 3 });
    await fake.postInteraction(endpoint(), first, sign);
    await fake.waitFor(isImageEdit(first.token));
    const click = fake.buttonInteraction(fake.original(first.token)!, 'reroll|1:1') as unknown as {
      message?: unknown;
      data: Record<string, unknown>;
    };
    const noMessage = JSON.stringify({ ...click, message: undefined });
    const long = JSON.stringify({ ...click, data: { ...click.data, custom_id: 'x'.repeat(101) } });
    for (const raw of [noMessage, long]) {
      const res = await fake.postInteraction(endpoint(), raw, sign);
      expect(res.status).toBe(400);
      expect((res.body as { error: { code: string } }).error.code).toBe('BAD_REQUEST');
    }
  });
});

describe('Discord gateway at the edge: a malformed interaction', () => {
  let fake: FakeDiscord;
  let app: Imagine;

  beforeAll(async () => {
    fake = await startFakeDiscord();
    app = await startTestImagine({ DISCORD_TOKEN: fake.botToken, DISCORD_API_URL: fake.apiUrl });
  });
  afterAll(async () => {
    await app?.stop();
    await fake?.close();
  });

  it('is answered ephemerally with what was wrong; nothing is queued', async () => {
    const submits = countSubmits(app);
    const interaction = fake.commandInteraction({ prompt: 'a fox', seed: 1 });
    fake.dispatch({ ...interaction, guild_id: ['600000000000000001'] });
    const cb = await fake.waitFor((r) => r.path.includes(`/interactions/${interaction.id}/`));
    expect(cb.status).toBe(204);
    expect(cb.body).toMatchObject({ type: 4, data: { flags: 64 } });
    expect(JSON.stringify(cb.body)).toMatch(/guild_id/);
    expect(submits.count()).toBe(0);
  });
});
