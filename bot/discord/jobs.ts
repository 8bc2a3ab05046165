/**
 * Turning an interaction into a job: the sealed reply target carries everything delivery
 * needs (application id, token, channel, guild, user, message id, upload limit), so any relay
 * instance can deliver it.
 */
import { type APIInteraction, type APIUser, ChannelType } from 'discord.js';
import { asImagineError } from '../../contracts/errors.ts';
import type { Origin } from '../../contracts/job.ts';
import type { DiscordTarget } from '../../contracts/seal.ts';
import type { Submitted } from '../../submit/submit.ts';
import type { InteractionContext } from './interactions.ts';
import { tellEphemeral } from './interactions.ts';
import { refusalText } from './messages.ts';

/** The user behind an interaction (guild member or DM user). */
export function interactionUser(interaction: APIInteraction): APIUser | undefined {
  return interaction.member?.user ?? interaction.user;
}

const THREAD_TYPES: ReadonlySet<number> = new Set([
  ChannelType.AnnouncementThread,
  ChannelType.PublicThread,
  ChannelType.PrivateThread,
]);

/**
 * The channel moderation judges: a thread's parent, since moderators allow, deny and set limits
 * on channels, and a thread belongs to its channel (a denied channel is denied in its threads,
 * an allowed one allowed). Replies still go to the thread itself.
 */
export function rulesChannelOf(interaction: APIInteraction): string | undefined {
  const channel = interaction.channel;
  if (channel && THREAD_TYPES.has(channel.type) && 'parent_id' in channel && channel.parent_id)
    return channel.parent_id;
  return channel?.id ?? interaction.channel_id;
}

/** The job's origin, for limits and logs: the scope is the guild (or the DM channel). */
export function originOf(interaction: APIInteraction): Origin {
  const user = interactionUser(interaction);
  const channelId = rulesChannelOf(interaction);
  return {
    platform: 'discord',
    ...(user ? { userId: user.id, userName: user.global_name ?? user.username } : {}),
    ...(interaction.guild_id ? { scopeId: interaction.guild_id } : {}),
    ...(channelId ? { channelId } : {}),
    // Age-restricted channels may have their own output-safety setting.
    ...(interaction.channel && 'nsfw' in interaction.channel && interaction.channel.nsfw === true
      ? { ageRestricted: true }
      : {}),
  };
}

/** The reply target of a job answered through this interaction's token. */
export function targetOf(
  interaction: APIInteraction,
  issuedAt: number,
  extra: Pick<DiscordTarget, 'messageId' | 'followUp' | 'ephemeral'> = {},
): DiscordTarget {
  const channelId = interaction.channel?.id ?? interaction.channel_id;
  return {
    platform: 'discord',
    applicationId: interaction.application_id,
    interactionToken: interaction.token,
    issuedAt,
    userId: interactionUser(interaction)?.id ?? '0',
    ...(channelId ? { channelId } : {}),
    ...(interaction.guild_id ? { guildId: interaction.guild_id } : {}),
    ...(interaction.attachment_size_limit
      ? { attachmentSizeLimit: interaction.attachment_size_limit }
      : {}),
    ...extra,
  };
}

/**
 * Submit a job for a deferred interaction; a refusal is told ephemerally and yields undefined.
 * `messageId` targets a follow-up instead of the original response.
 */
export async function submitJob(
  ctx: InteractionContext,
  request: Record<string, unknown>,
  extra: Pick<DiscordTarget, 'messageId' | 'followUp' | 'ephemeral'> = {},
): Promise<Submitted | undefined> {
  const { interaction, deps } = ctx;
  if (!extra.messageId && ctx.deferred) {
    // Known message id: a late delivery (after the token window) can reply to it.
    const original = await deps.api
      .getMessage(interaction.application_id, interaction.token)
      .catch(() => undefined);
    if (original) extra = { ...extra, messageId: original.id };
  }
  try {
    return await deps.submit({
      request,
      origin: originOf(interaction),
      replyTarget: targetOf(interaction, deps.now(), extra),
    });
  } catch (err) {
    const coded = asImagineError(err);
    if (coded.code === 'INTERNAL') deps.logger.error({ err }, 'discord submit failed');
    // A follow-up target means the original response is not the job's: leave it standing.
    await tellEphemeral(ctx, refusalText(coded), { keepOriginal: Boolean(extra.followUp) });
    return undefined;
  }
}
