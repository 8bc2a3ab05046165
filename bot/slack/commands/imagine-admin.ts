/**
 * `/imagine-admin <verb> …`: moderators change limits, blocked words and channels at runtime.
 * Allowed for workspace admins and owners (`users.info`, checked on every call) and for users in
 * SLACK_ADMIN_USERS; the logic is platform-neutral (bot/moderation/admin.ts). Answers are
 * ephemeral.
 */
import { asModeration, runAdminText } from '../../../moderation/index.ts';
import type { SlackUserRole } from '../../../moderation/permissions.ts';
import type { SlackCommand } from '../types.ts';

/** Said when the relay runs a custom admission policy instead of the moderation one. */
export const MODERATION_OFF = 'Moderation commands are not available on this imagine.';

/** The `/imagine-admin` command. */
export const imagineAdminCommand: SlackCommand = {
  name: '/imagine-admin',
  async handle({ command, ack, respond, env }) {
    // Ack at once: the permission check calls users.info, which may be slower than 3 s.
    await ack();
    const policy = asModeration(env.relay().admission);
    if (!policy) {
      await respond({ response_type: 'ephemeral', text: MODERATION_OFF });
      return;
    }
    const reply = await runAdminText(policy, {
      platform: 'slack',
      scopeId: command.team_id,
      actor: { id: command.user_id, name: command.user_name },
      evidence: {
        platform: 'slack',
        userId: command.user_id,
        lookupUser: async (user) => {
          const res = await env.client.users.info({ user });
          return res.user as SlackUserRole | undefined;
        },
      },
      text: command.text,
    });
    await respond({ response_type: 'ephemeral', text: reply.text });
  },
};
