/**
 * Progress and Cancel on Discord (issue 11), through the fake Discord and the whole pipeline (a
 * generator that reports step 1 of 4 and then waits): the status message shows the percentage
 * and a Cancel button; someone else's click is refused ephemerally; the requester's (or a
 * moderator's) click stops the job and the message says Cancelled as its one final message; a
 * click after the image answers that the job had already finished.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { customIdsOf, isEdit, isImageEdit } from '../fakes/discord/harness.ts';
import { type FakeDiscord, type FakeMessage, startFakeDiscord } from '../fakes/discord/server.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { SteppedGenerator } from '../helpers/progress-generator.ts';

const MANAGE_GUILD = String(1n << 5n);
const MANAGE_MESSAGES = String(1n << 13n);
const REQUESTER = '500000000000000001';
const OTHER = '500000000000000002';

let fake: FakeDiscord;
let app: Awaited<ReturnType<typeof startTestImagine>> | undefined;
const generator = new SteppedGenerator();

beforeAll(async () => {
  fake = await startFakeDiscord();
  app = await startTestImagine(
    { DISCORD_TOKEN: fake.botToken, DISCORD_API_URL: fake.apiUrl, CANCEL_POLL_MS: '200' },
    { generator },
  );
});
afterAll(async () => {
  generator.release();
  await app?.stop();
  await fake.close();
});

/** Start a job held at step 1 of 4; resolve once its status message shows 25 % and Cancel. */
async function heldJob(prompt: string) {
  generator.hold();
  const interaction = fake.commandInteraction({ prompt, userId: REQUESTER });
  fake.dispatch(interaction);
  const shown = await fake.waitFor(
    (r) =>
      isEdit(interaction.token)(r) &&
      r.status === 200 &&
      String(r.body?.content ?? '').includes('25%') &&
      customIdsOf(r.body).some((c) => c.startsWith('cancel|')),
  );
  const message = fake.messages.get(
    [...fake.messages.values()].find((m) => m.content === shown.body?.content)!.id,
  ) as FakeMessage;
  const cancelId = customIdsOf(shown.body).find((c) => c.startsWith('cancel|'))!;
  return { interaction, message, cancelId };
}

function click(message: FakeMessage, customId: string, userId: string, permissions?: string) {
  const button = fake.buttonInteraction(message, customId, {
    userId,
    ...(permissions ? { permissions } : {}),
  });
  fake.dispatch(button);
  return fake.waitFor((r) => r.path.includes(`/interactions/${button.id}/`));
}

const cancelledEdit = (token: string) => (r: Parameters<ReturnType<typeof isEdit>>[0]) =>
  isEdit(token)(r) && r.status === 200 && String(r.body?.content ?? '').includes('Cancelled');

describe('Discord: progress and Cancel', () => {
  it('shows the percentage with a Cancel button (custom_id under 100); someone else may not cancel; the requester does, once', async () => {
    const { interaction, message, cancelId } = await heldJob('a slow fox');
    expect(cancelId).toMatch(/^cancel\|[A-Za-z0-9_-]{22,}$/);
    expect(cancelId.length).toBeLessThanOrEqual(100);

    const refused = await click(message, cancelId, OTHER);
    expect(refused.body).toMatchObject({ type: 4, data: { flags: 64 } });
    expect(JSON.stringify(refused.body)).toContain('Only the person who asked');

    const accepted = await click(message, cancelId, REQUESTER);
    expect(accepted.body).toMatchObject({ type: 6 });
    const final = await fake.waitFor(cancelledEdit(interaction.token));
    expect(final.body?.content).toBe('🚫 Cancelled.');
    // The Cancel button is gone from the final message.
    expect(customIdsOf(final.body).some((c) => c.startsWith('cancel|'))).toBe(false);
    // The generator call was stopped, and no image ever reached the message.
    await vi.waitFor(() => expect(generator.aborted).toBeGreaterThanOrEqual(1), {
      timeout: 10_000,
    });
    generator.release();
    await new Promise((r) => setTimeout(r, 500));
    expect(fake.find(isImageEdit(interaction.token))).toEqual([]);
    expect(fake.find(cancelledEdit(interaction.token))).toHaveLength(1);
  });

  it('a moderator (Manage Server) may cancel someone else’s job', async () => {
    const { interaction, message, cancelId } = await heldJob('a slow owl');
    const accepted = await click(message, cancelId, OTHER, MANAGE_GUILD);
    expect(accepted.body).toMatchObject({ type: 6 });
    await fake.waitFor(cancelledEdit(interaction.token));
    await vi.waitFor(() => expect(generator.aborted).toBeGreaterThanOrEqual(2), {
      timeout: 10_000,
    });
    generator.release();
  });

  it('a moderator of the channel (Manage Messages there) may cancel someone else’s job too', async () => {
    const { interaction, message, cancelId } = await heldJob('a slow heron');
    // Discord's member.permissions of an interaction is the total in that channel, overwrites
    // included: a role allowed Manage Messages in this channel only has it here.
    const accepted = await click(message, cancelId, OTHER, MANAGE_MESSAGES);
    expect(accepted.body).toMatchObject({ type: 6 });
    await fake.waitFor(cancelledEdit(interaction.token));
    await vi.waitFor(() => expect(generator.aborted).toBeGreaterThanOrEqual(3), {
      timeout: 10_000,
    });
    generator.release();
  });

  it('a Cancel after the image answers ephemerally that the job had already finished', async () => {
    const { interaction, message, cancelId } = await heldJob('a quick hare');
    generator.release();
    await fake.waitFor(isImageEdit(interaction.token));
    const late = await click(message, cancelId, REQUESTER);
    expect(late.body).toMatchObject({ type: 4, data: { flags: 64 } });
    expect(JSON.stringify(late.body)).toContain('already finished');
    expect(fake.find(cancelledEdit(interaction.token))).toEqual([]);
  });

  it('progress edits stay within the route buckets and never hold up the image', async () => {
    generator.release();
    const interaction = fake.commandInteraction({ prompt: 'a fast fox', userId: REQUESTER });
    fake.dispatch(interaction);
    const image = await fake.waitFor(isImageEdit(interaction.token));
    expect(image.status).toBe(200);
    expect(fake.find(isEdit(interaction.token)).filter((r) => r.status === 429)).toEqual([]);
    expect(fake.overruns).toEqual([]);
  });
});
