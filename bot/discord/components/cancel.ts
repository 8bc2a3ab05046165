/**
 * Cancel on a job's status message: for the person who asked and for moderators (Manage Messages
 * in that channel, as deleting other users' messages needs; Manage Server or Administrator),
 * from the clicking member's permissions. The relay decides (FrontDoor
 * `cancel`): a queued job never reaches the generator, a running one is stopped, and the status
 * message then says Cancelled, once, as the job's final message. Anyone else, or a click after
 * the job ended, is answered ephemerally and nothing changes.
 */
import { InteractionResponseType } from 'discord.js';
import { JOB_ID_PATTERN } from '../../../contracts/job.ts';
import { discordCanModerateJobs } from '../../../moderation/permissions.ts';
import type { ComponentHandler } from '../interactions.ts';
import { tellEphemeral } from '../interactions.ts';
import { interactionUser } from '../jobs.ts';
import { BUTTONS } from '../messages.ts';

/** Said to someone who may not cancel the job. */
export const NOT_YOURS_TO_CANCEL =
  'Only the person who asked for this image or a moderator (Manage Messages in this channel, or Manage Server) can cancel it.';

/** Said when the job had already ended. */
export function alreadyFinishedText(state: string): string {
  return state === 'done'
    ? 'This job had already finished: its image was delivered. Nothing was cancelled.'
    : `This job had already ended (${state}). Nothing was cancelled.`;
}

/** `cancel|<jobId>`. */
export const cancelButton: ComponentHandler = {
  name: BUTTONS.cancel,
  async execute(ctx, args) {
    const { interaction, deps } = ctx;
    const [jobId] = args;
    if (!jobId || !JOB_ID_PATTERN.test(jobId))
      return tellEphemeral(ctx, 'This Cancel button is malformed; nothing was cancelled.');
    if (!deps.cancel) return tellEphemeral(ctx, 'Cancel is not available on this imagine.');
    const result = await deps.cancel(jobId, {
      platform: 'discord',
      userId: interactionUser(interaction)?.id ?? '0',
      isModerator: discordCanModerateJobs(interaction.member?.permissions),
    });
    switch (result.outcome) {
      case 'cancelled':
        // The relay turns the status message into "Cancelled" (through the job's own token).
        return ctx.respond({ type: InteractionResponseType.DeferredMessageUpdate });
      case 'already-finished':
        return tellEphemeral(ctx, alreadyFinishedText(result.state));
      case 'not-allowed':
        return tellEphemeral(ctx, NOT_YOURS_TO_CANCEL);
      case 'unknown':
        return tellEphemeral(
          ctx,
          'This job is no longer known here (it ended a while ago); nothing was cancelled.',
        );
    }
  },
};
