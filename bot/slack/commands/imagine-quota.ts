/** `/imagine-quota`: how many images the user has left here, and when the window resets. */
import { asModeration, runQuotaCommand } from '../../../moderation/index.ts';
import type { SlackCommand } from '../types.ts';
import { MODERATION_OFF } from './imagine-admin.ts';

/** The `/imagine-quota` command. */
export const imagineQuotaCommand: SlackCommand = {
  name: '/imagine-quota',
  async handle({ command, ack, env }) {
    const policy = asModeration(env.relay().admission);
    if (!policy) {
      await ack({ response_type: 'ephemeral', text: MODERATION_OFF });
      return;
    }
    const reply = await runQuotaCommand(policy, {
      platform: 'slack',
      userId: command.user_id,
      scopeId: command.team_id,
      channelId: command.channel_id,
    });
    await ack({ response_type: 'ephemeral', text: reply.text });
  },
};
