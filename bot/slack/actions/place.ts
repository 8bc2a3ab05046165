/** Where a button click's new job lives: under the clicked card, in the clicker's name. */
import type { BlockAction } from '@slack/bolt';
import { decodeJobSpec, type JobSpec } from '../blocks.ts';
import { tellUser } from '../replies.ts';
import type { JobPlace } from '../start-job.ts';
import type { SlackActionArgs } from '../types.ts';

/** The conversation, message and thread a click came from. */
export function clickOrigin(body: BlockAction): {
  channelId: string;
  messageTs: string | undefined;
  threadTs: string | undefined;
} {
  const container = body.container as {
    channel_id?: string;
    message_ts?: string;
    thread_ts?: string;
  };
  return {
    channelId: container.channel_id ?? body.channel?.id ?? body.user.id,
    messageTs: container.message_ts ?? body.message?.ts,
    threadTs: container.thread_ts ?? (body.message?.thread_ts as string | undefined),
  };
}

/** A new job's place: in channels, the clicked card's thread; in DMs, beside it. */
export function placeForClick(body: BlockAction): JobPlace {
  const { channelId, messageTs, threadTs } = clickOrigin(body);
  const inline = channelId.startsWith('D');
  const teamId = body.team?.id ?? body.user.team_id;
  return {
    channelId,
    userId: body.user.id,
    userName: body.user.username ?? body.user.name,
    responseUrl: body.response_url,
    ...(teamId ? { teamId } : {}),
    ...(inline ? { inline: true } : { threadTs: threadTs ?? messageTs }),
  };
}

/** The job spec a button carries, or tell the clicker the button is not usable. */
export async function specOf(args: SlackActionArgs): Promise<JobSpec | undefined> {
  const spec = decodeJobSpec(args.action.value);
  if (spec) return spec;
  const { channelId } = clickOrigin(args.body);
  await tellUser(
    args.env.client,
    args.env.logger,
    { channelId, userId: args.body.user.id, responseUrl: args.body.response_url },
    "This button doesn't carry a prompt I can read. Run `/imagine <prompt>` again.",
    { responseUrls: args.env.responseUrls },
  );
  return undefined;
}
