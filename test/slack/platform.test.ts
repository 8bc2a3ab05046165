import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSlackAdapter } from '../../bot/slack/adapter.ts';
import { FAKE_TEAM_ID } from '../fakes/slack/fake-slack.ts';
import {
  buttonsOf,
  postToSlackApp,
  slashCommandForm,
  TEST_SIGNING_SECRET,
  textOf,
} from '../fakes/slack/requests.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { FakeSlack, resultCard, startWithSlack, statusMessages } from './helpers.ts';

describe('Slack Web API behaviour: rate limits and tokens', () => {
  let fake: FakeSlack;
  let app: Awaited<ReturnType<typeof startWithSlack>>;
  beforeAll(async () => {
    fake = await FakeSlack.start();
    app = await startWithSlack(fake);
  });
  afterAll(async () => {
    await app?.stop();
    await fake?.stop();
  });

  it('a 429 with Retry-After is waited out and the call repeated, not dropped', async () => {
    fake.rateLimitNext('files.completeUploadExternal', 1);
    fake.rateLimitNext('chat.postMessage', 1);
    const res = await postToSlackApp(
      app.eventsUrl,
      slashCommandForm({ text: 'a slow snail', responseUrl: fake.responseUrl() }),
    );
    expect(res.status).toBe(200);
    const file = await fake.waitFor(() => [...fake.files.values()].find((f) => f.channel));
    expect((await sharp(file.bytes!).metadata()).format).toBe('png');
    for (const method of ['chat.postMessage', 'files.completeUploadExternal']) {
      const calls = fake.callsOf(method);
      expect(calls.map((c) => c.status).slice(0, 2)).toEqual([429, 200]);
      // The retry came no sooner than Retry-After said.
      expect(calls[1]!.at - calls[0]!.at).toBeGreaterThanOrEqual(950);
    }
    await resultCard(fake, statusMessages(fake)[0]!.ts);
  });

  it('a public channel the bot never joined: it joins and shares the image after all', async () => {
    fake.failNext('files.completeUploadExternal', 'not_in_channel');
    const res = await postToSlackApp(
      app.eventsUrl,
      slashCommandForm({
        text: 'a lone pine',
        channelId: 'C0PUBLIC',
        responseUrl: fake.responseUrl(),
      }),
    );
    expect(res.status).toBe(200);
    const file = await fake.waitFor(() =>
      [...fake.files.values()].find((f) => f.channel === 'C0PUBLIC'),
    );
    expect(fake.joined.has('C0PUBLIC')).toBe(true);
    expect((await sharp(file.bytes!).metadata()).format).toBe('png');
    const status = statusMessages(fake).find((m) => m.channel === 'C0PUBLIC')!;
    await resultCard(fake, status.ts);
  });

  it('a card whose image preview Slack refuses is sent again without the preview', async () => {
    fake.failNext('chat.update', 'invalid_blocks', (args) =>
      String(args.blocks ?? '').includes('slack_file'),
    );
    const res = await postToSlackApp(
      app.eventsUrl,
      slashCommandForm({
        text: 'a tin robot',
        channelId: 'C0PREVIEW',
        responseUrl: fake.responseUrl(),
      }),
    );
    expect(res.status).toBe(200);
    const status = await fake.waitFor(() =>
      statusMessages(fake).find((m) => m.channel === 'C0PREVIEW'),
    );
    const card = await resultCard(fake, status.ts);
    expect(card.blocks.some((b) => (b as { type: string }).type === 'image')).toBe(false);
    expect(textOf(card.blocks)).toContain('images in the thread');
    const previews = fake
      .callsOf('chat.update')
      .filter((c) => c.args.ts === status.ts && String(c.args.blocks).includes('slack_file'));
    expect(previews).toHaveLength(1);
  });

  it('a wrong bot token stops start-up with invalid_auth, naming SLACK_BOT_TOKEN', async () => {
    const adapter = createSlackAdapter({
      botToken: 'xoxb-wrong',
      signingSecret: TEST_SIGNING_SECRET,
      apiUrl: fake.apiUrl,
      logger: pino({ level: 'silent' }),
    });
    const relay = { relay: app.relay!.relay } as unknown as FastifyInstance;
    await expect(adapter.start!(relay)).rejects.toThrow(/SLACK_BOT_TOKEN.*invalid_auth/);
    expect(fake.callsOf('auth.test').at(-1)!.args).toEqual({ token: 'xoxb-wrong' });
  });
});

describe('Slack direct messages and the App Home (HTTP mode)', () => {
  let fake: FakeSlack;
  let app: Awaited<ReturnType<typeof startWithSlack>>;
  beforeAll(async () => {
    fake = await FakeSlack.start();
    app = await startWithSlack(fake);
  });
  afterAll(async () => {
    await app?.stop();
    await fake?.stop();
  });

  const event = (e: Record<string, unknown>) =>
    JSON.stringify({
      type: 'event_callback',
      token: 'x',
      team_id: FAKE_TEAM_ID,
      api_app_id: 'A0IMAGINE',
      event: e,
      event_id: `Ev${Math.random().toString(36).slice(2)}`,
      event_time: Math.floor(Date.now() / 1000),
      authorizations: [{ team_id: FAKE_TEAM_ID, user_id: 'UBOT0FAKE', is_bot: true }],
    });

  it('a DM to the bot is a prompt: status and image in the DM, side by side', async () => {
    const res = await postToSlackApp(
      app.eventsUrl,
      event({
        type: 'message',
        channel_type: 'im',
        channel: 'D0ALICE',
        user: 'U0ALICE',
        text: 'a paper boat --seed 5',
        ts: '1700000000.000100',
      }),
      { contentType: 'application/json' },
    );
    expect(res.status).toBe(200);
    const file = await fake.waitFor(() =>
      [...fake.files.values()].find((f) => f.channel === 'D0ALICE'),
    );
    expect(file.threadTs).toBeUndefined();
    const status = statusMessages(fake).find((m) => m.channel === 'D0ALICE')!;
    expect(status.threadTs).toBeUndefined();
    const card = await resultCard(fake, status.ts);
    expect(buttonsOf(card.blocks).map((b) => b.action_id)).toContain('imagine_reroll_job');
  });

  it('the bot ignores its own DMs and message edits', async () => {
    const before = fake.callsOf('chat.postMessage').length;
    for (const e of [{ bot_id: 'BFAKE' }, { subtype: 'message_changed' }]) {
      const res = await postToSlackApp(
        app.eventsUrl,
        event({
          type: 'message',
          channel_type: 'im',
          channel: 'D0ALICE',
          user: 'U0ALICE',
          text: 'not a prompt',
          ts: '1700000000.000200',
          ...e,
        }),
        { contentType: 'application/json' },
      );
      expect(res.status).toBe(200);
    }
    expect(fake.callsOf('chat.postMessage').length).toBe(before);
  });

  it('the App Home shows how to use it; its dialog answers in the DM', async () => {
    const res = await postToSlackApp(
      app.eventsUrl,
      event({ type: 'app_home_opened', user: 'U0CAROL', channel: 'D0CAROL', tab: 'home' }),
      { contentType: 'application/json' },
    );
    expect(res.status).toBe(200);
    const home = await fake.waitFor(() => fake.homeViews.find((v) => v.userId === 'U0CAROL'));
    expect(buttonsOf(home.view.blocks as unknown[]).map((b) => b.action_id)).toEqual([
      'imagine_open_dialog',
    ]);

    const submission = {
      type: 'view_submission',
      team: { id: FAKE_TEAM_ID, domain: 'fake' },
      user: { id: 'U0CAROL', username: 'carol', name: 'carol', team_id: FAKE_TEAM_ID },
      api_app_id: 'A0IMAGINE',
      token: 'x',
      trigger_id: '1.2.3',
      view: {
        id: 'V1',
        type: 'modal',
        callback_id: 'imagine_dialog',
        state: {
          values: {
            prompt: { prompt_input: { type: 'plain_text_input', value: 'a red kite' } },
            aspect: {
              aspect_input: { type: 'static_select', selected_option: { value: '9:16' } },
            },
          },
        },
      },
    };
    const submit = await postToSlackApp(
      app.eventsUrl,
      new URLSearchParams({ payload: JSON.stringify(submission) }).toString(),
    );
    expect(submit.status).toBe(200);
    const file = await fake.waitFor(() =>
      [...fake.files.values()].find((f) => f.channel === fake.dmOf('U0CAROL') && f.bytes),
    );
    // Posted to the user id, the status landed in the DM Slack opened for it (a D… id).
    expect(fake.dmOf('U0CAROL')).toMatch(/^D/);
    const meta = await sharp(file.bytes!).metadata();
    expect([meta.width, meta.height]).toEqual([768, 1344]);
  });
});

describe('Slack Socket Mode (SLACK_APP_TOKEN: no public URL)', () => {
  let fake: FakeSlack;
  let app: Awaited<ReturnType<typeof startTestImagine>>;
  beforeAll(async () => {
    fake = await FakeSlack.start();
    app = await startTestImagine({
      SLACK_BOT_TOKEN: fake.botToken,
      SLACK_APP_TOKEN: fake.appToken,
      SLACK_API_URL: fake.apiUrl,
    });
  });
  afterAll(async () => {
    await app?.stop();
    await fake?.stop();
  });

  it('a slash command over the socket is acked and answered with the image', async () => {
    await fake.socketConnected();
    const form = new URLSearchParams(
      slashCommandForm({ text: 'a quiet harbour', responseUrl: fake.responseUrl() }),
    );
    await fake.sendEnvelope('slash_commands', Object.fromEntries(form));
    const file = await fake.waitFor(() => [...fake.files.values()].find((f) => f.channel));
    expect((await sharp(file.bytes!).metadata()).format).toBe('png');
    await resultCard(fake, statusMessages(fake)[0]!.ts);
    // No HTTP receiver in Socket Mode.
    const res = await fetch(`${app.url}/slack/events`, { method: 'POST', body: '' });
    expect(res.status).toBe(404);
  });
});
