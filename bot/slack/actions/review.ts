/**
 * Approve / Reject under an image held for review in the workspace's review channel. Moderators
 * only (workspace admins and owners by `users.info`, or SLACK_ADMIN_USERS), re-checked here on
 * every click whoever can see the channel; the held image lives in the relay's memory, so after
 * a restart or its TTL the click says it expired.
 */
import { asModeration } from '../../../moderation/index.ts';
import { canModerate, type SlackUserRole } from '../../../moderation/permissions.ts';
import { tellUser } from '../replies.ts';
import { REVIEW_ACTION_IDS, SLACK_REVIEW_OUTCOME_TEXT } from '../review.ts';
import type { SlackAction, SlackActionArgs } from '../types.ts';

/** Said to someone who is not a moderator. */
export const NOT_A_MODERATOR =
  'Only moderators (workspace admins and owners, or SLACK_ADMIN_USERS) can approve or reject images held for review.';

async function decide(args: SlackActionArgs, verdict: 'approve' | 'reject'): Promise<void> {
  const { body, action, env } = args;
  await args.ack();
  const channelId = body.container?.channel_id ?? body.channel?.id;
  const messageTs = body.container?.message_ts ?? body.message?.ts;
  const tell = (text: string) =>
    tellUser(
      env.client,
      env.logger,
      {
        channelId: channelId ?? body.user.id,
        userId: body.user.id,
        responseUrl: body.response_url,
      },
      text,
      { now: env.now(), responseUrls: env.responseUrls },
    );
  const front = env.relay();
  const moderator = await canModerate(
    {
      platform: 'slack',
      userId: body.user.id,
      lookupUser: async (user) => {
        const res = await env.client.users.info({ user });
        return res.user as SlackUserRole | undefined;
      },
    },
    { slackAdminUsers: asModeration(front.admission)?.slackAdminUsers ?? [] },
  );
  if (!moderator) return void (await tell(NOT_A_MODERATOR));
  const match = /^([A-Za-z0-9_-]{1,100})\|([0-3])$/.exec(action.value ?? '');
  if (!match) return void (await tell('This review button is malformed; nothing was changed.'));
  const [, jobId, index] = match;
  const outcome = await front.reviews.decide(jobId!, Number(index), verdict, {
    id: body.user.id,
    ...(body.user.name ? { name: body.user.name } : {}),
    platform: 'slack',
    ...(body.team?.id ? { scopeId: body.team.id } : {}),
  });
  const line = SLACK_REVIEW_OUTCOME_TEXT[outcome](body.user.id);
  if (!channelId || !messageTs) return void (await tell(line));
  // The review message keeps what it said, loses its buttons and says who decided.
  const before = (body.message?.blocks ?? []).filter(
    (b: { type?: string }) => b.type === 'section',
  );
  await env.client.chat.update({
    channel: channelId,
    ts: messageTs,
    text: line,
    blocks: [...before, { type: 'context', elements: [{ type: 'mrkdwn', text: line }] }],
  });
}

/** The Approve button. */
export const reviewApproveAction: SlackAction = {
  actionId: REVIEW_ACTION_IDS.approve,
  handle: (args) => decide(args, 'approve'),
};

/** The Reject button. */
export const reviewRejectAction: SlackAction = {
  actionId: REVIEW_ACTION_IDS.reject,
  handle: (args) => decide(args, 'reject'),
};
