/** A direct message to the bot is a prompt: "a fox in space --ar 16:9". */
import type { App } from '@slack/bolt';
import { asImagineError } from '../../../contracts/errors.ts';
import { adviceFor, tellUser } from '../replies.ts';
import { requestFromText, USAGE } from '../request-text.ts';
import { startSlackJob } from '../start-job.ts';
import type { SlackEnv } from '../types.ts';

interface ImMessage {
  channel: string;
  channel_type?: string;
  user?: string;
  text?: string;
  subtype?: string;
  bot_id?: string;
  thread_ts?: string;
  team?: string;
}

/** Listen for messages in the app's DMs (needs the `message.im` event and `im:history`). */
export function registerDirectMessages(bolt: App, env: SlackEnv): void {
  bolt.event('message', async ({ event }) => {
    const m = event as unknown as ImMessage;
    // Edits, joins and the bot's own messages are not prompts; thread replies are chat.
    if (m.channel_type !== 'im' || m.subtype || m.bot_id || !m.user || m.thread_ts) return;
    const text = (m.text ?? '').trim();
    const place = { channelId: m.channel, userId: m.user, inline: true, teamId: m.team };
    if (!text) {
      await tellUser(env.client, env.logger, place, USAGE, { responseUrls: env.responseUrls });
      return;
    }
    let request: Record<string, unknown>;
    try {
      request = requestFromText(text);
    } catch (err) {
      await tellUser(env.client, env.logger, place, adviceFor(asImagineError(err)), {
        responseUrls: env.responseUrls,
      });
      return;
    }
    await startSlackJob(env, place, request);
  });
}
