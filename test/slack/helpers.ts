/** Shared set-up for the Slack tests: imagine wired to a fake Slack. */
import type { StartOptions } from '../../runtime/start.ts';
import { type FakeMessage, FakeSlack } from '../fakes/slack/fake-slack.ts';
import { buttonsOf, TEST_SIGNING_SECRET } from '../fakes/slack/requests.ts';
import { startTestImagine } from '../helpers/imagine.ts';

/** Env for HTTP mode against `fake`. */
export function slackHttpEnv(fake: FakeSlack): Record<string, string> {
  return {
    SLACK_BOT_TOKEN: fake.botToken,
    SLACK_SIGNING_SECRET: TEST_SIGNING_SECRET,
    SLACK_API_URL: fake.apiUrl,
  };
}

/** Start imagine in Slack HTTP mode against `fake`. */
export async function startWithSlack(fake: FakeSlack, opts: Partial<StartOptions> = {}) {
  const app = await startTestImagine(slackHttpEnv(fake), opts);
  return { ...app, eventsUrl: `${app.url}/slack/events` };
}

/** Action ids a result card carries (Re-roll, or Vary on a single image). */
const RESULT_ACTIONS = /^imagine_(reroll_job|vary_(strong|subtle)(_\d)?)$/;

/** Wait until the message `ts` shows the result card (creative-loop buttons on it). */
export function resultCard(fake: FakeSlack, ts: string): Promise<FakeMessage> {
  return fake.waitFor(() => {
    const m = fake.message(ts);
    return m && buttonsOf(m.blocks).some((b) => RESULT_ACTIONS.test(b.action_id)) ? m : undefined;
  });
}

/** The status messages the bot posted (not file messages), oldest first. */
export function statusMessages(fake: FakeSlack): FakeMessage[] {
  return fake.messages.filter((m) => !m.files && !m.deleted);
}

export { FakeSlack };
