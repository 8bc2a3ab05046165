/**
 * Approve / Reject under an image held for review in the moderators' channel. Moderators only
 * (Manage Messages there, Manage Server or Administrator), re-checked here from the member's
 * permissions whatever the channel's visibility; the held
 * image itself lives in the relay's memory, so after a restart the click says it expired.
 */
import { type APIMessageComponentInteraction, InteractionResponseType } from 'discord.js';
import { discordCanModerateJobs } from '../../../moderation/permissions.ts';
import type { ComponentHandler, InteractionContext } from '../interactions.ts';
import { tellEphemeral } from '../interactions.ts';
import { interactionUser } from '../jobs.ts';
import { BUTTONS } from '../messages.ts';

/** Said to a member who may not decide on a held image. */
export const NOT_A_REVIEWER =
  'Only moderators (Manage Messages in this channel, or Manage Server) can approve or reject images held for review.';

/** What the review message says once a moderator has acted (or found it expired). */
export const REVIEW_OUTCOME_TEXT = {
  approved: (by: string) => `✅ Approved by <@${by}>: delivered to the requester.`,
  rejected: (by: string) =>
    `🚫 Rejected by <@${by}>: the requester was told; nothing was delivered.`,
  expired: () =>
    '⌛ This held image expired: it is no longer in memory (the relay restarted, or it was held longer than SAFETY_REVIEW_TTL_SECONDS). Nothing was delivered; the requester can run the prompt again with the same seed.',
} as const;

async function decide(
  ctx: InteractionContext<APIMessageComponentInteraction>,
  args: string[],
): Promise<void> {
  const { interaction, deps } = ctx;
  const [verb, jobId, rawIndex] = args;
  const index = Number(rawIndex);
  if (!discordCanModerateJobs(interaction.member?.permissions))
    return tellEphemeral(ctx, NOT_A_REVIEWER);
  if ((verb !== 'approve' && verb !== 'reject') || !jobId || !Number.isInteger(index))
    return tellEphemeral(ctx, 'This review button is malformed; nothing was changed.');
  if (!deps.reviews) return tellEphemeral(ctx, 'Review is not available on this imagine.');
  const user = interactionUser(interaction);
  const actor = {
    id: user?.id ?? 'unknown',
    ...(user ? { name: user.global_name ?? user.username } : {}),
    platform: 'discord' as const,
    ...(interaction.guild_id ? { scopeId: interaction.guild_id } : {}),
  };
  // Acknowledge at once: delivering the approved image can take longer than Discord's 3 s.
  await ctx.respond({ type: InteractionResponseType.DeferredMessageUpdate });
  const outcome = await deps.reviews.decide(jobId, index, verb, actor);
  const line =
    outcome === 'approved'
      ? REVIEW_OUTCOME_TEXT.approved(actor.id)
      : outcome === 'rejected'
        ? REVIEW_OUTCOME_TEXT.rejected(actor.id)
        : REVIEW_OUTCOME_TEXT.expired();
  const before = interaction.message.content ?? '';
  await deps.api.editMessage(interaction.application_id, interaction.token, '@original', {
    content: `${before}\n${line}`.slice(0, 2000),
    components: [],
    // A rejected or expired image leaves the moderators' channel too.
    ...(outcome === 'approved' ? {} : { attachments: [] }),
    allowed_mentions: { parse: [] },
  });
}

/** The Approve / Reject buttons: `review|approve|<jobId>|<index>`. */
export const reviewButton: ComponentHandler = {
  name: BUTTONS.review,
  execute: decide,
};
