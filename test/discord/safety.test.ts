/**
 * Output safety on Discord, through the fake Discord (REST + gateway) and the real classifier:
 * spoilers as SPOILER_ attachments outside the embed, alt text on every image, blocked images
 * never uploaded.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ALT_TEXT_MAX, imageAltText } from '../../contracts/delivery.ts';
import { PROMPT_MAX_CHARS } from '../../contracts/limits.ts';
import { createNsfwClassifier } from '../../worker/safety/classifier.ts';
import { embedOf, isEdit, isImageEdit } from '../fakes/discord/harness.ts';
import { type FakeDiscord, startFakeDiscord } from '../fakes/discord/server.ts';
import { startTestImagine } from '../helpers/imagine.ts';

const classifier = createNsfwClassifier();
let fake: FakeDiscord | undefined;
let app: Awaited<ReturnType<typeof startTestImagine>> | undefined;
afterEach(async () => {
  await app?.stop();
  await fake?.close();
  app = undefined;
  fake = undefined;
});

async function start(env: Record<string, string>) {
  fake = await startFakeDiscord();
  app = await startTestImagine(
    { DISCORD_TOKEN: fake.botToken, DISCORD_API_URL: fake.apiUrl, ...env },
    { classifier },
  );
  return fake;
}

describe('Discord: output safety', () => {
  it('an image under the threshold: in the embed, with the prompt as alt text', async () => {
    const discord = await start({ SAFETY: 'block' });
    const interaction = discord.commandInteraction({ prompt: 'a fox in space', seed: 5, count: 1 });
    discord.dispatch(interaction);
    const final = await discord.waitFor(isImageEdit(interaction.token));
    const file = final.files[0]!;
    expect(file.filename).toMatch(/^imagine-/);
    expect(embedOf(final.body).image?.url).toBe(`attachment://${file.filename}`);
    const message = discord.original(interaction.token)!;
    expect(message.attachments[0]).toMatchObject({
      description: 'a fox in space',
    });
    expect(message.attachments[0]?.flags).toBeUndefined();
  });

  it('spoiler: a SPOILER_ attachment, not the embed image, and the user is told', async () => {
    const discord = await start({ SAFETY: 'spoiler', SAFETY_THRESHOLD: '0' });
    const interaction = discord.commandInteraction({ prompt: 'a fox in space', seed: 6 });
    discord.dispatch(interaction);
    const final = await discord.waitFor(isImageEdit(interaction.token));
    const file = final.files[0]!;
    expect(file.filename).toMatch(/^SPOILER_imagine-6\.png$/);
    // An embed image is never blurred: a spoiler must not be one.
    expect(embedOf(final.body).image).toBeUndefined();
    const message = discord.original(interaction.token)!;
    expect(message.attachments[0]).toMatchObject({
      filename: file.filename,
      flags: 8,
      description: 'a fox in space',
    });
    expect(message.content).toContain('spoiler');
  });

  it('block: nothing uploaded; the reply says the server’s safety setting blocked it', async () => {
    const discord = await start({ SAFETY: 'block', SAFETY_THRESHOLD: '0' });
    const interaction = discord.commandInteraction({ prompt: 'a fox in space', seed: 7 });
    discord.dispatch(interaction);
    await discord.waitFor(
      (r) =>
        isEdit(interaction.token)(r) &&
        JSON.stringify(r.body ?? {}).includes("server's safety setting blocked"),
    );
    expect(discord.find(isImageEdit(interaction.token))).toEqual([]);
    expect(discord.find((r) => r.files.length > 0)).toEqual([]);
  });

  it('alt text is cut to each platform’s limit, without control characters', () => {
    for (const max of Object.values(ALT_TEXT_MAX)) {
      // The longest prompt fits every platform's limit, cut where needed (code points, not
      // UTF-16 units: an emoji is never split).
      const alt = imageAltText('🦊'.repeat(PROMPT_MAX_CHARS), max);
      expect([...alt].length).toBeLessThanOrEqual(max);
      const cut = imageAltText('🦊'.repeat(2 * max), max);
      expect([...cut].length).toBe(max);
      expect(cut.endsWith('🦊…')).toBe(true);
    }
    expect(imageAltText('a\u202efox\u0007 in\n\nspace', 100)).toBe('a fox in space');
    expect(imageAltText(undefined, 100)).toBe('Generated image');
  });
});
