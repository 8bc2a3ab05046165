/**
 * Queue positions told to chat jobs: a job is told its first position, then only a position that
 * changed. Against the fake Discord (every edit spends the webhook route's rate limit, whatever
 * its text) and the fake Slack, with the relay's real tracker and delivery on a short interval.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { WebClient } from '@slack/web-api';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiscordApi } from '../../bot/discord/api.ts';
import { DiscordDeliverer } from '../../bot/discord/deliverer.ts';
import { slackClientOptions } from '../../bot/slack/adapter.ts';
import { SlackDeliverer } from '../../bot/slack/deliverer.ts';
import type { ChatDeliverer } from '../../contracts/delivery.ts';
import type { Job } from '../../contracts/job.ts';
import { type ReplyTarget, sealReplyTarget } from '../../contracts/seal.ts';
import { ChatDelivery } from '../../relay/delivery.ts';
import { JobTracker } from '../../relay/job-tracker.ts';
import { isEdit } from '../fakes/discord/harness.ts';
import { type FakeDiscord, startFakeDiscord } from '../fakes/discord/server.ts';
import { FakeSlack } from '../fakes/slack/fake-slack.ts';

const logger = pino({ level: 'silent' });
const SECRET = 'chat-positions-test-secret-0123456789abcdef';
/** The rounds of positions run this often here (5 s in production). */
const INTERVAL_MS = 40;
/** Long enough for several rounds, and for their edits to reach the fake. */
const severalRounds = () => sleep(INTERVAL_MS * 5);

const job = (jobId: string, platform: 'discord' | 'slack', target: ReplyTarget): Job => ({
  v: 1,
  jobId,
  task: 'generate',
  count: 1,
  prompt: `prompt ${jobId}`,
  params: { width: 64, height: 64, seed: 1, steps: 4 },
  origin: { platform, userId: '500000000000000001' },
  createdAt: Date.now(),
  expiresAt: Date.now() + 60_000,
  replyTarget: sealReplyTarget(SECRET, target),
});

/** The relay's tracker and chat delivery around one deliverer, with the positions it was handed. */
function relayWith(deliverer: ChatDeliverer) {
  const tracker = new JobTracker({ resultTtlMs: 60_000, maxBufferedBytes: 1e6, jobTtlMs: 60_000 });
  const delivery = new ChatDelivery(SECRET, logger, 'demo', { positionIntervalMs: INTERVAL_MS });
  const handed = new Map<string, number[]>();
  delivery.register({
    platform: deliverer.platform,
    async deliver(target, event) {
      if (event.state === 'queued')
        handed.set(event.jobId, [...(handed.get(event.jobId) ?? []), event.position ?? -1]);
      await deliverer.deliver(target, event);
    },
  });
  delivery.attach(tracker);
  return { tracker, delivery, handed };
}

/**
 * Seven jobs queued (a-g); then jobs behind leave in two rounds (nothing ahead moves), then c
 * leaves (d moves up), then the head starts (everyone behind it moves up). Returns the positions
 * each job was handed.
 */
async function queueScenario(
  relay: ReturnType<typeof relayWith>,
  register: (jobId: string) => Promise<Job>,
): Promise<void> {
  const { tracker, delivery } = relay;
  for (const id of ['a', 'b', 'c', 'd', 'e', 'f', 'g']) tracker.registerQueued(await register(id));
  await severalRounds();
  tracker.apply('g', { state: 'cancelled' });
  await severalRounds();
  tracker.apply('f', { state: 'cancelled' });
  await severalRounds();
  tracker.forget('e');
  await severalRounds();
  tracker.apply('c', { state: 'cancelled' });
  await severalRounds();
  tracker.apply('a', { state: 'generating' });
  await severalRounds();
  await delivery.drain();
}

describe('queue positions told to chat jobs', () => {
  let discord: FakeDiscord;
  let slack: FakeSlack;
  beforeAll(async () => {
    discord = await startFakeDiscord();
    slack = await FakeSlack.start();
  });
  afterAll(async () => {
    await discord?.close();
    await slack?.stop();
  });

  it('Discord: an unchanged position is not edited again; each change is one edit', async () => {
    const relay = relayWith(
      new DiscordDeliverer({
        api: new DiscordApi({ apiUrl: discord.apiUrl, token: discord.botToken }),
        logger,
        statusIntervalMs: 0,
      }),
    );
    const tokens = new Map<string, string>();
    await queueScenario(relay, async (jobId) => {
      const interaction = discord.commandInteraction({ prompt: `prompt ${jobId}` });
      discord.acknowledge(interaction.token, { type: 5 });
      tokens.set(jobId, interaction.token);
      return job(jobId, 'discord', {
        platform: 'discord',
        applicationId: discord.applicationId,
        interactionToken: interaction.token,
        issuedAt: Date.now(),
        userId: '500000000000000001',
      });
    });
    const lines = (jobId: string) =>
      discord
        .find(isEdit(tokens.get(jobId)!))
        .map((r) => String(r.body?.content ?? ''))
        .filter((content) => content.includes('Queued'));
    const queued = (line: string) => expect.stringContaining(line);
    expect(lines('a')).toEqual([queued('you are next')]);
    expect(lines('b')).toEqual([queued('1 job ahead'), queued('you are next')]);
    expect(lines('d')).toEqual([
      queued('3 jobs ahead'),
      queued('2 jobs ahead'),
      queued('1 job ahead'),
    ]);
    expect(relay.handed.get('b')).toEqual([1, 0]);
    expect(relay.handed.get('d')).toEqual([3, 2, 1]);
    for (const jobId of tokens.keys())
      expect(discord.find(isEdit(tokens.get(jobId)!)).every((r) => r.status === 200)).toBe(true);
    expect(discord.overruns).toEqual([]);
  });

  it('Slack: the relay hands on only changed positions, and each is one chat.update', async () => {
    const client = new WebClient(
      slack.botToken,
      slackClientOptions({ botToken: slack.botToken, apiUrl: slack.apiUrl, logger }),
    );
    const relay = relayWith(new SlackDeliverer({ client, logger, isDemo: () => true }));
    const statusTs = new Map<string, string>();
    await queueScenario(relay, async (jobId) => {
      const res = await client.chat.postMessage({ channel: 'C0QUEUE', text: `imagining ${jobId}` });
      statusTs.set(jobId, res.ts!);
      return job(jobId, 'slack', {
        platform: 'slack',
        channelId: 'C0QUEUE',
        userId: 'U0ALICE',
        statusTs: res.ts!,
      });
    });
    const updates = (jobId: string) =>
      slack
        .callsOf('chat.update')
        .filter(
          (c) => c.args.ts === statusTs.get(jobId) && JSON.stringify(c.args).includes('ueue'),
        );
    expect(relay.handed.get('a')).toEqual([0]);
    expect(relay.handed.get('b')).toEqual([1, 0]);
    expect(relay.handed.get('d')).toEqual([3, 2, 1]);
    expect(updates('a')).toHaveLength(1);
    expect(updates('b')).toHaveLength(2);
    expect(updates('d')).toHaveLength(3);
  });
});
