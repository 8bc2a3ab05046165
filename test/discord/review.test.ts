/**
 * Output safety `review` on Discord, through the fake Discord and the real classifier (a
 * threshold of 0 flags every image): the user is told the image awaits a moderator, the
 * moderators' channel gets it as a spoiler with Approve / Reject for moderators only, Approve
 * delivers to the original reply, Reject tells the user, and after a restart a click says the
 * held image expired.
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

const classifier = createNsfwClassifier();
const GUILD = '600000000000000001';
const MODS = '700000000000000099';
const MANAGE_GUILD = String(1n << 5n);
const MANAGE_MESSAGES = String(1n << 13n);

let fake: FakeDiscord;
let dataDir: string;
let app: Awaited<ReturnType<typeof startTestImagine>> | undefined;

async function startApp() {
  app = await startTestImagine(
    {
      DISCORD_TOKEN: fake.botToken,
      DISCORD_API_URL: fake.apiUrl,
      DATA_DIR: dataDir,
      SAFETY: 'review',
      SAFETY_THRESHOLD: '0',
    },
    { classifier },
  );
  return app;
}

beforeAll(async () => {
  fake = await startFakeDiscord();
  dataDir = mkdtempSync(join(tmpdir(), 'imagine-review-'));
  const first = await startApp();
  await asModeration(first.relay?.relay.admission)!.change(
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

/** Ask for one image; resolve with the interaction and the review message it produced. */
async function heldImage(prompt: string, seed: number) {
  const before = fake.channelMessages(MODS).length;
  const interaction = fake.commandInteraction({ prompt, seed, count: 1 });
  fake.dispatch(interaction);
  const told = await fake.waitFor(
    (r) => isEdit(interaction.token)(r) && JSON.stringify(r.body ?? {}).includes('awaits review'),
  );
  await fake.waitFor(
    (r) => r.method === 'POST' && r.path.endsWith(`/channels/${MODS}/messages`) && r.status === 200,
  );
  const review = fake.channelMessages(MODS)[before] as FakeMessage;
  return { interaction, told, review };
}

function click(message: FakeMessage, verb: 'approve' | 'reject', permissions?: string) {
  const id = customIdsOf(message as unknown as Record<string, unknown>).find((c) =>
    c.startsWith(`review|${verb}|`),
  )!;
  const button = fake.buttonInteraction(message, id, {
    userId: '500000000000000007',
    ...(permissions ? { permissions } : {}),
  });
  fake.dispatch(button);
  return button;
}

describe('Discord: output safety review', () => {
  it('the user is told it awaits a moderator; moderators get a spoiler with Approve / Reject', async () => {
    const { interaction, told, review } = await heldImage('a fox in space', 11);
    expect(JSON.stringify(told.body)).toContain(
      "this server's safety setting holds flagged images",
    );
    // Nothing reached the user's reply.
    expect(fake.find(isImageEdit(interaction.token))).toEqual([]);
    expect(review.attachments).toHaveLength(1);
    expect(review.attachments[0]).toMatchObject({
      filename: 'SPOILER_imagine-11.png',
      flags: 8,
      description: 'a fox in space',
    });
    expect(review.content).toContain('Held for review');
    expect(review.content).toContain('<@500000000000000001>');
    const ids = customIdsOf(review as unknown as Record<string, unknown>);
    expect(ids).toHaveLength(2);
    expect(ids[0]).toMatch(/^review\|approve\|[A-Za-z0-9_-]{22,}\|0$/);
    expect(ids[1]).toMatch(/^review\|reject\|/);
  });

  it('a member who is not a moderator cannot approve, whatever the channel lets them see', async () => {
    const { interaction, review } = await heldImage('a member tries', 12);
    const button = click(review, 'approve');
    const cb = await fake.waitFor((r) => r.path.includes(`/interactions/${button.id}/`));
    expect(cb.body).toMatchObject({ type: 4, data: { flags: 64 } });
    expect(JSON.stringify(cb.body)).toContain('Only moderators');
    await new Promise((r) => setTimeout(r, 300));
    expect(fake.find(isImageEdit(interaction.token))).toEqual([]);
    expect(
      customIdsOf(fake.messages.get(review.id) as unknown as Record<string, unknown>),
    ).toHaveLength(2);
  });

  it('Approve delivers the image to the original reply and says who approved', async () => {
    const { interaction, review } = await heldImage('a lighthouse at dusk', 13);
    click(review, 'approve', MANAGE_GUILD);
    const delivered = await fake.waitFor(isImageEdit(interaction.token));
    expect(delivered.files[0]?.filename).toBe('imagine-13.png');
    await fake.waitFor(() => (fake.messages.get(review.id)?.content ?? '').includes('Approved by'));
    const after = fake.messages.get(review.id)!;
    expect(after.content).toContain('Approved by <@500000000000000007>');
    expect(after.components).toEqual([]);
    const audit = await asModeration(app?.relay?.relay.admission)!.store.audit(
      `discord:${GUILD}`,
      20,
    );
    expect(audit.map((a) => a.action).join('\n')).toMatch(/safety review approved: image 1 of job/);
  });

  it('a moderator with Manage Messages in the moderators’ channel may approve too', async () => {
    const { interaction, review } = await heldImage('a moderated heron', 15);
    click(review, 'approve', MANAGE_MESSAGES);
    const delivered = await fake.waitFor(isImageEdit(interaction.token));
    expect(delivered.files[0]?.filename).toBe('imagine-15.png');
    await fake.waitFor(() => (fake.messages.get(review.id)?.content ?? '').includes('Approved by'));
  });

  it('Reject tells the user and removes the image from the moderators’ channel', async () => {
    const { interaction, review } = await heldImage('a red bicycle', 14);
    click(review, 'reject', MANAGE_GUILD);
    await fake.waitFor(
      (r) =>
        isEdit(interaction.token)(r) &&
        JSON.stringify(r.body ?? {}).includes('a moderator rejected the image'),
    );
    await fake.waitFor(() => (fake.messages.get(review.id)?.content ?? '').includes('Rejected by'));
    expect(fake.messages.get(review.id)?.attachments).toEqual([]);
    expect(fake.find(isImageEdit(interaction.token))).toEqual([]);
  });

  it('a job of 2, both flagged: each image gets its own review message; Approve delivers each to the user', async () => {
    const before = fake.channelMessages(MODS).length;
    const interaction = fake.commandInteraction({ prompt: 'two foxes', seed: 21, count: 2 });
    fake.dispatch(interaction);
    const told = await fake.waitFor(
      (r) => isEdit(interaction.token)(r) && JSON.stringify(r.body ?? {}).includes('await review'),
    );
    expect(JSON.stringify(told.body)).toContain('all 2 of yours await review');
    await fake.waitFor(() => fake.channelMessages(MODS).length >= before + 2);
    const reviews = fake.channelMessages(MODS).slice(before, before + 2);
    const indexes = reviews.map(
      (m) =>
        customIdsOf(m as unknown as Record<string, unknown>)
          .find((c) => c.startsWith('review|approve|'))!
          .split('|')[3],
    );
    expect(indexes.sort()).toEqual(['0', '1']);
    expect(reviews.map((m) => m.attachments[0]?.filename).sort()).toEqual([
      'SPOILER_imagine-21.png',
      'SPOILER_imagine-22.png',
    ]);
    const byIndex = (i: string) => reviews[indexes.indexOf(i)]!;
    // The first decision replaces "awaits review" with the image, and says the other still waits.
    click(byIndex('1'), 'approve', MANAGE_GUILD);
    const first = await fake.waitFor(isImageEdit(interaction.token));
    expect(first.files.map((f) => f.filename)).toEqual(['imagine-22.png']);
    expect(JSON.stringify(first.body)).toContain('1 held for a moderator');
    // The second goes beside it, as a follow-up: the reply keeps image 2.
    click(byIndex('0'), 'approve', MANAGE_GUILD);
    const followUp = await fake.waitFor(
      (r) =>
        r.method === 'POST' &&
        decodeURIComponent(r.path).endsWith(
          `/webhooks/${fake.applicationId}/${interaction.token}`,
        ) &&
        r.files.length > 0,
    );
    expect(followUp.status).toBe(200);
    expect(followUp.files.map((f) => f.filename)).toEqual(['imagine-21.png']);
    expect(JSON.stringify(followUp.body)).toContain('A moderator approved image 1 of 2');
    expect(fake.find(isImageEdit(interaction.token))).toHaveLength(1);
  });

  it('Approve after a restart: the held image is gone from memory, and the click says it expired', async () => {
    const { interaction, review } = await heldImage('a quiet harbour', 15);
    await app?.stop();
    await startApp();
    click(review, 'approve', MANAGE_GUILD);
    await fake.waitFor(() => (fake.messages.get(review.id)?.content ?? '').includes('expired'));
    const after = fake.messages.get(review.id)!;
    expect(after.content).toContain('This held image expired');
    expect(after.components).toEqual([]);
    expect(after.attachments).toEqual([]);
    expect(fake.find(isImageEdit(interaction.token))).toEqual([]);
  });
});
