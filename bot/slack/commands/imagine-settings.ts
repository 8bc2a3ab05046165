/** `/imagine-settings [name=value …] | reset`: the caller's own /imagine defaults, ephemerally. */
import {
  asModeration,
  parseUserSettingsText,
  runUserSettingsCommand,
  type UserSettingsCommand,
  UserSettingsError,
} from '../../../moderation/index.ts';
import type { SlackCommand } from '../types.ts';
import { MODERATION_OFF } from './imagine-admin.ts';

/** The `/imagine-settings` command. */
export const imagineSettingsCommand: SlackCommand = {
  name: '/imagine-settings',
  async handle({ command, ack, env }) {
    const policy = asModeration(env.relay().admission);
    if (!policy) {
      await ack({ response_type: 'ephemeral', text: MODERATION_OFF });
      return;
    }
    let parsed: UserSettingsCommand;
    try {
      parsed = parseUserSettingsText(command.text);
    } catch (err) {
      if (!(err instanceof UserSettingsError)) throw err;
      await ack({ response_type: 'ephemeral', text: err.message });
      return;
    }
    // Slack cannot post a file that only one person in a channel sees: results stay public.
    const reply = await runUserSettingsCommand(
      policy,
      {
        platform: 'slack',
        userId: command.user_id,
        scopeId: command.team_id,
        channelId: command.channel_id,
      },
      parsed,
      { privateSupported: false },
    );
    await ack({ response_type: 'ephemeral', text: reply.text });
  },
};
