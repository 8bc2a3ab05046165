/**
 * Output safety `review` on a job whose images are judged differently, through the fake Discord
 * and the real classifier: the threshold sits between the real scores of the job's two demo
 * images, so one is flagged and one is not. The unflagged one is delivered at once, the flagged
 * one only goes to the moderators (never to the user unreviewed, whatever its place in the job),
 * and a decision on it goes beside the delivered reply instead of over it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asModeration } from '../../moderation/index.ts';
import { createNsfwClassifier } from '../../worker/safety/classifier.ts';
import { customIdsOf, isEdit, isImageEdit } from '../fakes/discord/harness.ts';
import { type FakeDiscord, type FakeMessage, startFakeDiscord } from '../fakes/discord/server.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { seedPairScoredApart } from '../helpers/seed-pair.ts';

const classifier = createNsfwClassifier();
const GUILD = '600000000000000001';
const MODS = '700000000000000098';
const MANAGE_GUILD = String(1n << 5n);
const PROMPT = 'a quiet harbour at noon';
/** /imagine's default size (Discord has no size option): the scores are taken at it. */
const SIZE = 1024;
let seed = 0;
/** The seed of the image the threshold flags (the higher score). */
let flaggedSeed = 0;
let threshold = '';

let fake: FakeDiscord;
let dataDir: string;
let app: Awaited<ReturnType<typeof startTestImagine>> | undefined;

beforeAll(async () => {
  ({ seed, threshold, flaggedSeed } = await seedPairScoredApart(classifier, PROMPT, SIZE));
  fake = await startFakeDiscord();
  dataDir = mkdtempSync(join(tmpdir(), 'imagine-review-mixed-'));
  app = await startTestImagine(
    {
      DISCORD_TOKEN: fake.botToken,
      DISCORD_API_URL: fake.apiUrl,
      DATA_DIR: dataDir,
      SAFETY: 'review',
      SAFETY_THRESHOLD: threshold,
    },
    { classifier },
  );
  await asModeration(app.relay?.relay.admission)!.change(
    `discord:${GUILD}`,
    { kind: 'limits', changes: { reviewChannel: MODS } },
    { at: Date.now(), actorId: 'm0', action: 'limits: review_channel' },
  );
});
afterAll(async () => {
  await app?.stop();
  await fake.close();
  rmSync(dataDir, { recursive: true, force: true });
});

/** Run the job of two; resolve with its interaction, the delivered edit and the review message. */
async function mixedJob() {
  const before = fake.channelMessages(MODS).length;
  const interaction = fake.commandInteraction({ prompt: PROMPT, seed, count: 2 });
  fake.dispatch(interaction);
  const delivered = await fake.waitFor(isImageEdit(interaction.token));
  await fake.waitFor(() => fake.channelMessages(MODS).length > before);
  const review = fake.channelMessages(MODS)[before] as FakeMessage;
  return { interaction, delivered, review };
}

function click(message: FakeMessage, verb: 'approve' | 'reject') {
  const id = customIdsOf(message as unknown as Record<string, unknown>).find((c) =>
    c.startsWith(`review|${verb}|`),
  )!;
  fake.dispatch(
    fake.buttonInteraction(message, id, {
      userId: '500000000000000007',
      permissions: MANAGE_GUILD,
    }),
  );
}

const isFollowUp = (token: string) => (r: { method: string; path: string }) =>
  r.method === 'POST' &&
  decodeURIComponent(r.path).endsWith(`/webhooks/${fake.applicationId}/${token}`);

describe('Discord: review of a job with one flagged image of two', () => {
  it('delivers the unflagged image, holds only the flagged one, and Approve adds it beside the reply', async () => {
    const { interaction, delivered, review } = await mixedJob();
    const keptSeed = flaggedSeed === seed ? seed + 1 : seed;
    expect(delivered.files.map((f) => f.filename)).toEqual([`imagine-${keptSeed}.png`]);
    expect(JSON.stringify(delivered.body)).toContain('1 of 2 images was withheld');
    expect(JSON.stringify(delivered.body)).toContain('1 held for a moderator');
    expect(review.attachments.map((a) => a.filename)).toEqual([
      `SPOILER_imagine-${flaggedSeed}.png`,
    ]);
    expect(customIdsOf(review as unknown as Record<string, unknown>)[0]).toMatch(
      new RegExp(`\\|${flaggedSeed - seed}$`),
    );
    click(review, 'approve');
    const added = await fake.waitFor((r) => isFollowUp(interaction.token)(r) && r.files.length > 0);
    expect(added.status).toBe(200);
    expect(added.files.map((f) => f.filename)).toEqual([`imagine-${flaggedSeed}.png`]);
    expect(JSON.stringify(added.body)).toContain(`approved image ${flaggedSeed - seed + 1} of 2`);
    // The reply still shows the image delivered first: nothing edited it again.
    expect(fake.find(isEdit(interaction.token)).filter((r) => r.at > delivered.at)).toEqual([]);
  });

  it('Reject tells the user only, beside the reply; the delivered image stays', async () => {
    const { interaction, delivered, review } = await mixedJob();
    click(review, 'reject');
    const notice = await fake.waitFor(isFollowUp(interaction.token));
    expect(notice.body).toMatchObject({ flags: 64 });
    expect(JSON.stringify(notice.body)).toContain(
      `A moderator rejected image ${flaggedSeed - seed + 1} of 2`,
    );
    expect(fake.find(isEdit(interaction.token)).filter((r) => r.at > delivered.at)).toEqual([]);
  });
});
