/**
 * Output safety `review` on Slack, through the fake Slack and the real classifier (a threshold
 * of 0 flags every image): the user is told the image awaits a moderator; the review channel gets
 * a blurred copy with the prompt, who asked, score and threshold, and Approve / Reject; a
 * non-moderator's click is refused and changes nothing; Approve delivers the original to the
 * requester's status message; Reject tells the requester; after a restart a click says expired.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asModeration } from '../../moderation/index.ts';
import { createNsfwClassifier } from '../../worker/safety/classifier.ts';
import { FAKE_TEAM_ID, type FakeMessage } from '../fakes/slack/fake-slack.ts';
import {
  blockActionForm,
  buttonsOf,
  postToSlackApp,
  slashCommandForm,
  textOf,
} from '../fakes/slack/requests.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { FakeSlack, slackHttpEnv, statusMessages } from './helpers.ts';

const classifier = createNsfwClassifier();
const MODS = 'C0MODS';
let fake: FakeSlack;
let dataDir: string;
let app: Awaited<ReturnType<typeof startTestImagine>> | undefined;

async function startApp() {
  app = await startTestImagine(
    { ...slackHttpEnv(fake), DATA_DIR: dataDir, SAFETY: 'review', SAFETY_THRESHOLD: '0' },
    { classifier },
  );
  return app;
}

beforeAll(async () => {
  fake = await FakeSlack.start({
    users: [
      { id: 'U0ALICE', name: 'alice' },
      { id: 'U0MOD', name: 'mod', is_admin: true },
    ],
  });
  dataDir = mkdtempSync(join(tmpdir(), 'imagine-slack-review-'));
  const first = await startApp();
  await asModeration(first.relay?.relay.admission)!.change(
    `slack:${FAKE_TEAM_ID}`,
    { kind: 'limits', changes: { reviewChannel: MODS } },
    { at: Date.now(), actorId: 'U0MOD', action: 'limits: review_channel' },
  );
});
afterAll(async () => {
  await app?.stop();
  await fake.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

const posted = new Map<string, unknown[]>();

const reviewMessages = () =>
  fake.messages.filter((m) => m.channel === MODS && !m.files && buttonsOf(m.blocks).length > 0);

/** Ask for one image; resolve with the review message (buttons) it produced. */
async function heldImage(prompt: string, seed: number, id: string) {
  const before = reviewMessages().length;
  const res = await postToSlackApp(
    `${app!.url}/slack/events`,
    slashCommandForm({
      text: `${prompt} --seed ${seed} --count 1`,
      responseUrl: fake.responseUrl(id),
    }),
  );
  expect(res.status).toBe(200);
  const review = await fake.waitFor(() => reviewMessages()[before]);
  posted.set(review.ts, structuredClone(review.blocks));
  return review;
}

/** Click a button of the review message as it was posted (the fake edits `message` in place). */
function click(message: FakeMessage, actionId: string, userId: string, id: string) {
  const blocks = (posted.get(message.ts) ?? message.blocks) as unknown[];
  posted.set(message.ts, blocks);
  const button = buttonsOf(blocks).find((b) => b.action_id === actionId)!;
  return postToSlackApp(
    `${app!.url}/slack/events`,
    blockActionForm({
      button,
      message: { ts: message.ts, channel: message.channel, blocks },
      userId,
      responseUrl: fake.responseUrl(id),
    }),
  );
}

const told = (id: string, pattern: RegExp) =>
  fake.waitFor(() =>
    fake.responses.find((r) => r.id === id && pattern.test(JSON.stringify(r.body))),
  );

describe('Slack: output safety review', () => {
  it('holds the image: the user is told, the review channel gets a blurred copy and the buttons', async () => {
    const review = await heldImage('a lighthouse at dusk', 11, 'h1');
    const text = textOf(review.blocks);
    expect(text).toContain('<@U0ALICE>');
    expect(text).toContain('a lighthouse at dusk');
    expect(text).toMatch(/score \d\.\d\d ≥ threshold 0/);
    expect(buttonsOf(review.blocks).map((b) => b.action_id)).toEqual([
      'imagine_review_approve',
      'imagine_review_reject',
    ]);
    const copy = fake.messages.find((m) => m.channel === MODS && m.files)!.files![0]!;
    expect(copy.filename).toBe('imagine-11-held-blurred.png');
    expect((await sharp(copy.bytes!).metadata()).width).toBeLessThanOrEqual(512);
    // Nothing reached the requester's channel; the requester heard why.
    expect([...fake.files.values()].filter((f) => f.channel === 'C0GENERAL')).toEqual([]);
    await told('h1', /awaits review/);
  });

  it('a non-moderator is refused and the image stays held; a moderator approves: the original reaches the requester', async () => {
    const review = await heldImage('a red bicycle', 12, 'h2');
    expect((await click(review, 'imagine_review_approve', 'U0ALICE', 'n1')).status).toBe(200);
    await told('n1', /Only moderators/);
    expect(buttonsOf(fake.message(review.ts)!.blocks)).toHaveLength(2);

    expect((await click(review, 'imagine_review_approve', 'U0MOD', 'a1')).status).toBe(200);
    const file = await fake.waitFor(() =>
      [...fake.files.values()].find(
        (f) => f.channel === 'C0GENERAL' && f.filename === 'imagine-12.png',
      ),
    );
    // The original, full size: not the blurred copy.
    expect((await sharp(file.bytes!).metadata()).width).toBeGreaterThan(512);
    const decided = await fake.waitFor(() => {
      const m = fake.message(review.ts)!;
      return buttonsOf(m.blocks).length === 0 ? m : undefined;
    });
    expect(textOf(decided.blocks)).toContain('Approved by <@U0MOD>');
    // A second click finds it gone.
    await click(review, 'imagine_review_reject', 'U0MOD', 'a2');
    await fake.waitFor(() =>
      fake.message(review.ts)!.text.includes('expired') ? true : undefined,
    );
  });

  it('reject: the requester is told, nothing delivered', async () => {
    const review = await heldImage('a green teapot', 13, 'h3');
    await click(review, 'imagine_review_reject', 'U0MOD', 'r1');
    await fake.waitFor(() =>
      statusMessages(fake).find((m) =>
        /a moderator rejected the image/i.test(JSON.stringify(m.blocks)),
      ),
    );
    const decided = await fake.waitFor(() => {
      const m = fake.message(review.ts)!;
      return buttonsOf(m.blocks).length === 0 ? m : undefined;
    });
    expect(textOf(decided.blocks)).toContain('Rejected by <@U0MOD>');
    expect([...fake.files.values()].find((f) => f.filename === 'imagine-13.png')).toBeUndefined();
  });

  it('a job of 2, both flagged: a review card for each; each Approve delivers its image, the second beside the first', async () => {
    const before = reviewMessages().length;
    const res = await postToSlackApp(
      `${app!.url}/slack/events`,
      slashCommandForm({
        text: 'two teapots --seed 31 --count 2',
        responseUrl: fake.responseUrl('m1'),
      }),
    );
    expect(res.status).toBe(200);
    await told('m1', /all 2 of yours await review/);
    await fake.waitFor(() => reviewMessages().length >= before + 2);
    const cards = reviewMessages().slice(before, before + 2);
    for (const card of cards) posted.set(card.ts, structuredClone(card.blocks));
    const indexOf = (m: FakeMessage) =>
      buttonsOf(m.blocks)
        .find((b) => b.action_id === 'imagine_review_approve')!
        .value!.split('|')[1];
    expect(cards.map(indexOf).sort()).toEqual(['0', '1']);
    const card = (i: string) => cards.find((m) => indexOf(m) === i)!;
    const inGeneral = (name: string) =>
      [...fake.files.values()].find((f) => f.channel === 'C0GENERAL' && f.filename === name);

    await click(card('1'), 'imagine_review_approve', 'U0MOD', 'm2');
    const second = await fake.waitFor(() => inGeneral('imagine-32.png'));
    // The first decision turns the status message into the result card of that image.
    const status = await fake.waitFor(() =>
      statusMessages(fake).find((m) =>
        m.blocks.some((b) => (b as { slack_file?: { id?: string } }).slack_file?.id === second.id),
      ),
    );
    await click(card('0'), 'imagine_review_approve', 'U0MOD', 'm3');
    const first = await fake.waitFor(() => inGeneral('imagine-31.png'));
    expect(first.initialComment).toContain('a moderator approved image 1 of 2');
    expect(first.threadTs).toBe(status.ts);
    // The card still shows image 2: the second approval went beside it.
    expect(
      fake
        .message(status.ts)!
        .blocks.some((b) => (b as { slack_file?: { id?: string } }).slack_file?.id === second.id),
    ).toBe(true);
    // Both review cards say who decided (and lose their buttons).
    await fake.waitFor(() =>
      cards.every((c) => buttonsOf(fake.message(c.ts)!.blocks).length === 0),
    );
  });

  it('after a restart the held image is gone: a click says it expired', async () => {
    const review = await heldImage('a blue kite', 14, 'h4');
    await app!.stop();
    await startApp();
    expect((await click(review, 'imagine_review_approve', 'U0MOD', 'e1')).status).toBe(200);
    const m = await fake.waitFor(() => {
      const now = fake.message(review.ts)!;
      return buttonsOf(now.blocks).length === 0 ? now : undefined;
    });
    expect(textOf(m.blocks)).toContain('This held image expired');
    expect([...fake.files.values()].find((f) => f.filename === 'imagine-14.png')).toBeUndefined();
  });
});
