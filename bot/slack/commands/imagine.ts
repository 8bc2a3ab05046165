/** `/imagine <prompt> [--ar 16:9] [--seed 42]`: a visible status message, then the image. */
import { asImagineError } from '../../../contracts/errors.ts';
import { adviceFor } from '../replies.ts';
import { requestFromText, USAGE } from '../request-text.ts';
import { startSlackJob } from '../start-job.ts';
import type { SlackCommand } from '../types.ts';

/** The `/imagine` command. */
export const imagineCommand: SlackCommand = {
  name: '/imagine',
  async handle({ command, ack, env }) {
    if (command.text.trim() === '') {
      await ack({ response_type: 'ephemeral', text: USAGE });
      return;
    }
    let request: Record<string, unknown>;
    try {
      request = requestFromText(command.text);
    } catch (err) {
      await ack({ response_type: 'ephemeral', text: adviceFor(asImagineError(err)) });
      return;
    }
    // Ack at once: posting the status and enqueueing happen after Slack's 3-second window opens.
    await ack();
    await startSlackJob(
      env,
      {
        teamId: command.team_id,
        channelId: command.channel_id,
        userId: command.user_id,
        userName: command.user_name,
        responseUrl: command.response_url,
        inline: command.channel_id.startsWith('D'),
      },
      request,
    );
  },
};
