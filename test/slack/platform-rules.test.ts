/**
 * What Slack's docs require of an app, through the whole pipeline against the strict fake:
 * alt text as `alt_txt`, previews only for the types Slack renders, Events API repeats that
 * start no second job, the fallback ack inside Slack's 3 s, a new block_id per version of a
 * message, and response_url's 5 uses and 30 minutes.
 */
import { WebClient } from '@slack/web-api';
import pino from 'pino';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createSlackAdapter } from '../../bot/slack/adapter.ts';
import { ResponseUrlTracker, tellUser } from '../../bot/slack/replies.ts';
import type { SlackCommand } from '../../bot/slack/types.ts';
import { ImagineError } from '../../contracts/errors.ts';
import type { GenerateRequest, Generator } from '../../worker/generator.ts';
import { DemoGenerator } from '../../worker/generators/demo.ts';
import {
  blockActionForm,
  buttonsOf,
  eventCallbackBody,
  eventRetryHeaders,
  postToSlackApp,
  slashCommandForm,
  TEST_SIGNING_SECRET,
  textOf,
} from '../fakes/slack/requests.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { FakeSlack, resultCard, slackHttpEnv, startWithSlack, statusMessages } from './helpers.ts';

/** The demo generator, answering in WebP when the prompt says so and failing when it says "fail". */
class PickyGenerator implements Generator {
  readonly name = 'demo';
  private readonly demo = new DemoGenerator();
  async generate(req: GenerateRequest, opts: { signal: AbortSignal }) {
    if (req.prompt.includes('fail'))
      throw new ImagineError('GENERATION_FAILED', 'the model crashed');
    const images = await this.demo.generate(req, opts);
    if (!req.prompt.includes('webp')) return images;
    return Promise.all(
      images.map(async (image) => ({
        ...image,
        bytes: await sharp(image.bytes).webp().toBuffer(),
        contentType: 'image/webp' as const,
      })),
    );
  }
}

const blockIds = (blocks: unknown[]) =>
  (blocks as Array<{ block_id?: string }>).map((b) => b.block_id).filter(Boolean);

describe('Slack platform rules, end to end against the strict fake', () => {
  let fake: FakeSlack;
  let app: Awaited<ReturnType<typeof startWithSlack>>;
  beforeAll(async () => {
    fake = await FakeSlack.start();
    app = await startWithSlack(fake, { generator: new PickyGenerator() });
  });
  afterAll(async () => {
    await app?.stop();
    await fake?.stop();
  });

  const imagine = (text: string, channelId: string) =>
    postToSlackApp(
      app.eventsUrl,
      slashCommandForm({ text, channelId, responseUrl: fake.responseUrl() }),
    );

  it('the upload carries the prompt as alt_txt, the argument Slack reads', async () => {
    expect((await imagine('a heron at dawn --count 1', 'C0ALT')).status).toBe(200);
    const file = await fake.waitFor(() =>
      [...fake.files.values()].find((f) => f.channel === 'C0ALT' && f.bytes),
    );
    expect(file.altText).toBe('a heron at dawn');
    const asked = fake.callsOf('files.getUploadURLExternal').at(-1)!.args;
    expect(asked.alt_txt).toBe('a heron at dawn');
  });

  it('a WebP result is shared as PNG, so the card shows its preview', async () => {
    expect((await imagine('a webp lighthouse', 'C0WEBP')).status).toBe(200);
    const status = await fake.waitFor(() =>
      statusMessages(fake).find((m) => m.channel === 'C0WEBP'),
    );
    const card = await resultCard(fake, status.ts);
    const file = [...fake.files.values()].find((f) => f.channel === 'C0WEBP')!;
    expect(file.filename).toMatch(/\.png$/);
    expect((await sharp(file.bytes!).metadata()).format).toBe('png');
    expect(card.blocks).toContainEqual(
      expect.objectContaining({ type: 'image', slack_file: { id: file.id } }),
    );
    // Never refused for a preview Slack cannot render.
    const previews = fake
      .callsOf('chat.update')
      .filter((c) => c.args.ts === status.ts && String(c.args.blocks).includes('slack_file'));
    expect(previews).toHaveLength(1);
  });

  it('a failed job retried and failed again shows its failure both times, with new block ids', async () => {
    expect((await imagine('a fail whale', 'C0RETRY')).status).toBe(200);
    const status = await fake.waitFor(() =>
      statusMessages(fake).find((m) => m.channel === 'C0RETRY'),
    );
    const failedCard = () =>
      fake.waitFor(() => {
        const m = fake.message(status.ts);
        return m && buttonsOf(m.blocks).some((b) => b.action_id === 'imagine_retry') && m;
      });
    const first = await failedCard();
    const firstIds = blockIds(first.blocks);
    const updates = first.updates;
    const retry = buttonsOf(first.blocks).find((b) => b.action_id === 'imagine_retry')!;
    const res = await postToSlackApp(
      app.eventsUrl,
      blockActionForm({
        button: retry,
        message: { ts: status.ts, channel: 'C0RETRY', blocks: first.blocks },
        responseUrl: fake.responseUrl(),
      }),
    );
    expect(res.status).toBe(200);
    const second = await fake.waitFor(() => {
      const m = fake.message(status.ts);
      return (
        m &&
        m.updates > updates &&
        buttonsOf(m.blocks).some((b) => b.action_id === 'imagine_retry') &&
        m
      );
    });
    expect(textOf(second.blocks)).toContain('image failed: *a fail whale*');
    for (const id of blockIds(second.blocks)) expect(firstIds).not.toContain(id);
  });

  it('an Events API repeat of a DM (X-Slack-Retry-Num, same event_id) starts no second job', async () => {
    const body = eventCallbackBody(
      {
        type: 'message',
        channel_type: 'im',
        channel: 'D0DAVE',
        user: 'U0DAVE',
        text: 'a single swan --count 1',
        ts: '1700000001.000100',
      },
      'Ev0REPEATED',
    );
    const first = await postToSlackApp(app.eventsUrl, body, { contentType: 'application/json' });
    expect(first.status).toBe(200);
    for (const n of [1, 2, 3]) {
      const again = await postToSlackApp(app.eventsUrl, body, {
        contentType: 'application/json',
        headers: eventRetryHeaders(n),
      });
      expect(again.status).toBe(200);
    }
    const status = await fake.waitFor(() =>
      statusMessages(fake).find((m) => m.channel === 'D0DAVE'),
    );
    await resultCard(fake, status.ts);
    expect(statusMessages(fake).filter((m) => m.channel === 'D0DAVE')).toHaveLength(1);
    expect([...fake.files.values()].filter((f) => f.channel === 'D0DAVE')).toHaveLength(1);
  });
});

describe('Slack response_url: 5 uses within 30 minutes, then postEphemeral, then a DM', () => {
  let fake: FakeSlack;
  beforeAll(async () => {
    fake = await FakeSlack.start();
  });
  afterAll(async () => {
    await fake?.stop();
  });
  const logger = pino({ level: 'silent' });
  const client = () => new WebClient(fake.botToken, { slackApiUrl: fake.apiUrl });

  it('a sixth notice is not posted to a used-up response_url; it goes by postEphemeral', async () => {
    const urls = new ResponseUrlTracker();
    const url = fake.responseUrl('five');
    const target = { channelId: 'C0FIVE', userId: 'U0ALICE', responseUrl: url };
    for (let i = 0; i < 7; i++)
      await tellUser(client(), logger, target, `notice ${i}`, {
        now: fake.now(),
        responseUrls: urls,
      });
    expect(fake.responses.filter((r) => r.id === 'five')).toHaveLength(5);
    expect(fake.refusedResponses).toEqual([]);
    expect(fake.ephemerals.filter((e) => e.channel === 'C0FIVE').map((e) => e.text)).toEqual([
      'notice 5',
      'notice 6',
    ]);
  });

  it('after 30 minutes (the fake’s clock) the response_url is left alone', async () => {
    const urls = new ResponseUrlTracker();
    const issuedAt = fake.now();
    const url = fake.responseUrl('late');
    fake.advance(31 * 60 * 1000);
    await tellUser(
      client(),
      logger,
      { channelId: 'C0LATE', userId: 'U0ALICE', responseUrl: url, responseUrlIssuedAt: issuedAt },
      'late notice',
      { now: fake.now(), responseUrls: urls },
    );
    expect(fake.responses.filter((r) => r.id === 'late')).toEqual([]);
    expect(fake.ephemerals.find((e) => e.channel === 'C0LATE')?.text).toBe('late notice');
  });

  it('a refused URL (another relay used it up) is not tried again; a channel the bot is not in gets a DM', async () => {
    const urls = new ResponseUrlTracker();
    const url = fake.responseUrl('elsewhere');
    // Another relay already used all five.
    for (let i = 0; i < 5; i++) await fetch(url, { method: 'POST', body: '{}' });
    fake.failNext('chat.postEphemeral', 'channel_not_found');
    fake.failNext('chat.postEphemeral', 'channel_not_found');
    const target = { channelId: 'G0PRIVATE', userId: 'U0ERIN', responseUrl: url };
    await tellUser(client(), logger, target, 'first', { now: fake.now(), responseUrls: urls });
    await tellUser(client(), logger, target, 'second', { now: fake.now(), responseUrls: urls });
    expect(fake.refusedResponses.filter((r) => r.id === 'elsewhere')).toEqual([
      { id: 'elsewhere', error: 'used_url' },
    ]);
    const dm = fake.messages.filter((m) => m.channel === fake.dmOf('U0ERIN'));
    expect(dm.map((m) => m.text)).toEqual(['first', 'second']);
  });
});

describe('Slack: the fallback ack lands inside 3 s', () => {
  it('a listener that never acks still gets Slack a 200 before Slack gives up (3 s)', async () => {
    const fake = await FakeSlack.start();
    let finish: () => void = () => {};
    const stuck: SlackCommand = {
      name: '/imagine',
      handle: () => new Promise<void>((resolve) => (finish = resolve)),
    };
    const env = slackHttpEnv(fake);
    const adapter = createSlackAdapter({
      botToken: env.SLACK_BOT_TOKEN!,
      signingSecret: TEST_SIGNING_SECRET,
      apiUrl: fake.apiUrl,
      logger: pino({ level: 'silent' }),
      commands: [stuck],
    });
    const app = await startTestImagine({}, { adapters: [adapter] });
    try {
      const res = await postToSlackApp(
        `${app.url}/slack/events`,
        slashCommandForm({ text: 'a stuck clock', responseUrl: fake.responseUrl() }),
        // Slack's own deadline: it gives up on an app that has not answered in 3 s.
        { signal: AbortSignal.timeout(3_000) },
      );
      expect(res.status).toBe(200);
    } finally {
      finish();
      await app.stop();
      await fake.stop();
    }
  });
});

describe('Slack Events API repeats across relays sharing Redis', () => {
  it('a repeat delivered to another relay starts no second job', async () => {
    const fake = await FakeSlack.start();
    const redis = { REDIS_URL: inject('redisUrl'), REDIS_KEY_PREFIX: `t${Date.now()}:` };
    const first = await startTestImagine({ ...slackHttpEnv(fake), ...redis });
    const second = await startTestImagine({ ...slackHttpEnv(fake), ...redis });
    try {
      const body = eventCallbackBody(
        {
          type: 'message',
          channel_type: 'im',
          channel: 'D0FRAN',
          user: 'U0FRAN',
          text: 'one owl',
          ts: '1700000002.000100',
        },
        `Ev0SHARED${Date.now()}`,
      );
      const opts = { contentType: 'application/json' };
      expect((await postToSlackApp(`${first.url}/slack/events`, body, opts)).status).toBe(200);
      const again = await postToSlackApp(`${second.url}/slack/events`, body, {
        ...opts,
        headers: eventRetryHeaders(1),
      });
      expect(again.status).toBe(200);
      const status = await fake.waitFor(() =>
        statusMessages(fake).find((m) => m.channel === 'D0FRAN'),
      );
      await resultCard(fake, status.ts);
      expect(statusMessages(fake).filter((m) => m.channel === 'D0FRAN')).toHaveLength(1);
    } finally {
      await first.stop();
      await second.stop();
      await fake.stop();
    }
  });
});
