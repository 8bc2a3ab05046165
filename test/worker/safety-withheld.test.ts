/**
 * A job with some images delivered and some withheld by output safety: the user is told how
 * many were blocked or held, on the web (WebSocket image frame and GET /jobs/:id) and on Discord
 * (the reply's content). The real classifier judges the demo images; the threshold is set
 * between the real scores of the job's two images, so one is flagged and one is not.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNsfwClassifier } from '../../worker/safety/classifier.ts';
import { isImageEdit } from '../fakes/discord/harness.ts';
import { type FakeDiscord, startFakeDiscord } from '../fakes/discord/server.ts';
import { enqueueJob } from '../helpers/enqueue.ts';
import { startTestImagine } from '../helpers/imagine.ts';
import { seedPairScoredApart } from '../helpers/seed-pair.ts';
import { followJob } from '../helpers/ws.ts';

const classifier = createNsfwClassifier();
const PROMPT = 'a quiet harbour at noon';
const SIZE = 128;
let threshold = '';
let seed = 0;

/** Find a base seed whose two demo images score apart; the threshold goes between them. */
beforeAll(async () => {
  ({ seed, threshold } = await seedPairScoredApart(classifier, PROMPT, SIZE));
});

let app: Awaited<ReturnType<typeof startTestImagine>> | undefined;
let discord: FakeDiscord | undefined;
afterAll(async () => {
  await app?.stop();
  await discord?.close();
});

describe('a job with delivered and withheld images', () => {
  it('web: the image frame and GET /jobs/:id say 1 of 2 was blocked', async () => {
    app = await startTestImagine({ SAFETY: 'block', SAFETY_THRESHOLD: threshold }, { classifier });
    const job = await enqueueJob(app.url, PROMPT, { width: SIZE, height: SIZE, seed, count: 2 });
    const seen = await followJob(job.ws);
    expect(seen.binaries.length).toBeGreaterThan(0);
    const frame = seen.texts.find((t) => t.type === 'image');
    expect(frame).toMatchObject({ withheld: { blocked: 1, held: 0, of: 2 } });
    const status = await (await fetch(`${app.url}/jobs/${job.jobId}`)).json();
    expect(status).toMatchObject({ state: 'done', withheld: { blocked: 1, held: 0, of: 2 } });
    await app.stop();
    app = undefined;
  });

  it('Discord: the delivered reply says how many were withheld', async () => {
    discord = await startFakeDiscord();
    app = await startTestImagine(
      {
        DISCORD_TOKEN: discord.botToken,
        DISCORD_API_URL: discord.apiUrl,
        SAFETY: 'block',
        SAFETY_THRESHOLD: threshold,
      },
      { classifier },
    );
    const interaction = discord.commandInteraction({ prompt: PROMPT, seed, count: 2 });
    discord.dispatch(interaction);
    const edit = await discord.waitFor(isImageEdit(interaction.token));
    expect(JSON.stringify(edit.body)).toContain(
      "1 of 2 images was withheld by this server's safety setting (1 blocked)",
    );
  });
});
