/** `/imagine-quota`: how many images the user has left here, and when the window resets. */
import { asModeration, runQuotaCommand } from '../../../moderation/index.ts';
import type { SlashCommand } from '../interactions.ts';
import { tellEphemeral } from '../interactions.ts';
import { originOf } from '../jobs.ts';
import { MODERATION_OFF } from './imagine-admin.ts';

/** The `/imagine-quota` command. */
export const imagineQuotaCommand: SlashCommand = {
  data: {
    name: 'imagine-quota',
    description: 'How many images you have left, and when that resets',
  },

  async execute(ctx) {
    const policy = asModeration(ctx.deps.admission);
    if (!policy) return tellEphemeral(ctx, MODERATION_OFF);
    // The same origin /imagine counts against: guild (or DM) and channel.
    const reply = await runQuotaCommand(policy, originOf(ctx.interaction));
    await tellEphemeral(ctx, reply.text);
  },
};
