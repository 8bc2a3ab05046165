/**
 * Slack's method tiers against the deliverer: queue-position edits are budgeted and dropped
 * before they could reach chat.update's tier, and a 429 on one never holds up a result.
 * The fake enforces the tiers on a clock the test moves.
 */
import { WebClient } from '@slack/web-api';
import pino from 'pino';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { slackClientOptions } from '../../bot/slack/adapter.ts';
import { SlackDeliverer } from '../../bot/slack/deliverer.ts';
import { SlackRateBudget } from '../../bot/slack/rate-budget.ts';
import type { DeliveryEvent } from '../../contracts/delivery.ts';
import type { SlackTarget } from '../../contracts/seal.ts';
import { buttonsOf } from '../fakes/slack/requests.ts';
import { FakeSlack } from './helpers.ts';

const logger = pino({ level: 'silent' });

describe('Slack rate tiers: status edits are budgeted, results never wait behind them', () => {
  let fake: FakeSlack;
  let client: WebClient;
  let png: Buffer;
  beforeAll(async () => {
    fake = await FakeSlack.start();
    const options = slackClientOptions({ botToken: fake.botToken, apiUrl: fake.apiUrl, logger });
    client = new WebClient(fake.botToken, options);
    png = await sharp({
      create: { width: 64, height: 64, channels: 3, background: { r: 200, g: 40, b: 90 } },
    })
      .png()
      .toBuffer();
  });
  afterAll(async () => {
    await fake?.stop();
  });

  /** A deliverer as the adapter builds it, on the fake's clock. */
  const deliverer = () => {
    const now = () => fake.now();
    return new SlackDeliverer({
      client,
      droppableClient: new WebClient(fake.botToken, {
        ...slackClientOptions({ botToken: fake.botToken, apiUrl: fake.apiUrl, logger }),
        rejectRateLimitedCalls: true,
        retryConfig: { retries: 0 },
      }),
      logger,
      now,
      budget: new SlackRateBudget({ now }),
      isDemo: () => true,
    });
  };

  const statusTarget = async (channel: string, prompt: string): Promise<SlackTarget> => {
    const res = await client.chat.postMessage({ channel, text: `imagining ${prompt}` });
    return { platform: 'slack', channelId: channel, userId: 'U0ALICE', statusTs: res.ts! };
  };

  const image = () => ({ bytes: png, contentType: 'image/png', seed: 7, width: 64, height: 64 });

  const event = (jobId: string, over: Partial<DeliveryEvent>): DeliveryEvent => ({
    jobId,
    state: 'queued',
    prompt: `prompt ${jobId}`,
    createdAt: fake.now(),
    width: 64,
    height: 64,
    seed: 7,
    ...over,
  });

  it('a minute of queue positions for ten jobs stays inside chat.update’s tier, and every result lands', async () => {
    const slack = deliverer();
    const jobs = await Promise.all(
      Array.from({ length: 10 }, async (_, i) => ({
        id: `job${i}`,
        target: await statusTarget('C0BUSY', `job${i}`),
      })),
    );
    const updatesBefore = fake.callsOf('chat.update').length;
    // What the relay sends: every 5 s, the position of each of the first ten jobs — 120 edits
    // a minute, each one a change (the queue moves), against a tier of 50.
    for (let tick = 0; tick < 12; tick++) {
      for (const [i, job] of jobs.entries())
        await slack.deliver(job.target, event(job.id, { position: (i + tick) % 10 }));
      fake.advance(5_000);
    }
    const positionEdits = fake.callsOf('chat.update').length - updatesBefore;
    expect(positionEdits).toBeGreaterThan(0);
    expect(positionEdits).toBeLessThanOrEqual(25);
    // Then every job finishes while those edits still count: each result still goes out.
    for (const job of jobs)
      await slack.deliver(job.target, event(job.id, { state: 'done', images: [image()] }));
    expect(fake.rateLimited('chat.update')).toBe(0);
    for (const job of jobs) {
      const card = fake.message(job.target.statusTs!)!;
      expect(buttonsOf(card.blocks).map((b) => b.action_id)).toContain('imagine_reroll_job');
    }
    expect([...fake.files.values()].filter((f) => f.channel === 'C0BUSY')).toHaveLength(10);
    fake.advance(120_000);
  });

  it('a 429 on a status edit drops that edit; another job’s image is shared without waiting for Retry-After', async () => {
    const slack = deliverer();
    const waiting = await statusTarget('C0LIMIT', 'waiting');
    const finished = await statusTarget('C0LIMIT', 'finished');
    fake.rateLimitNext('chat.update', 60);
    await slack.deliver(waiting, event('waiting', { position: 3 }));
    expect(fake.rateLimited('chat.update')).toBeGreaterThan(0);
    const done = slack.deliver(finished, event('finished', { state: 'done', images: [image()] }));
    // The image is shared while chat.update is still held for 60 s: nothing paused the client.
    const file = await fake.waitFor(
      () => [...fake.files.values()].find((f) => f.channel === 'C0LIMIT' && f.bytes),
      10_000,
    );
    expect(file.threadTs).toBe(finished.statusTs);
    // The card's own chat.update waits for Slack's Retry-After, then goes out.
    fake.advance(61_000);
    await done;
    const card = fake.message(finished.statusTs!)!;
    expect(buttonsOf(card.blocks).map((b) => b.action_id)).toContain('imagine_reroll_job');
    // The dropped position edit was not repeated later.
    const edits = fake.callsOf('chat.update').filter((c) => c.args.ts === waiting.statusTs);
    expect(edits).toHaveLength(1);
    fake.advance(120_000);
  });

  it('the same position twice is one edit', async () => {
    const slack = deliverer();
    const target = await statusTarget('C0SAME', 'same');
    for (let i = 0; i < 5; i++) await slack.deliver(target, event('same', { position: 2 }));
    await slack.deliver(target, event('same', { position: 1 }));
    const edits = fake.callsOf('chat.update').filter((c) => c.args.ts === target.statusTs);
    expect(edits.map((c) => String(c.args.text).match(/Queued · (\d+) ahead/)?.[1])).toEqual([
      '2',
      '1',
    ]);
  });
});
