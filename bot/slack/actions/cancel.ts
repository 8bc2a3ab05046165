/**
 * Cancel on a job's status message: for the person who asked and for moderators (workspace
 * admins and owners by `users.info`, or SLACK_ADMIN_USERS), decided on the relay (FrontDoor
 * `cancel`). A cancelled job's status message then says Cancelled, once, as its final message;
 * anyone else, or a click after the job ended, is answered ephemerally and nothing changes.
 */
import type { CancelResult } from '../../../contracts/delivery.ts';
import { JOB_ID_PATTERN } from '../../../contracts/job.ts';
import { asModeration } from '../../../moderation/index.ts';
import { canModerate, type SlackUserRole } from '../../../moderation/permissions.ts';
import { CANCEL_ACTION_ID } from '../blocks.ts';
import { tellUser } from '../replies.ts';
import type { SlackAction, SlackActionArgs } from '../types.ts';

/** Said to someone who may not cancel the job. */
export const NOT_YOURS_TO_CANCEL =
  'Only the person who asked for this image or a moderator (workspace admins and owners) can cancel it.';

async function cancel(args: SlackActionArgs): Promise<void> {
  const { body, action, env } = args;
  await args.ack();
  const userId = body.user.id;
  const tell = (text: string) =>
    tellUser(
      env.client,
      env.logger,
      {
        channelId: body.container?.channel_id ?? body.channel?.id ?? userId,
        userId,
        responseUrl: body.response_url,
      },
      text,
      { now: env.now(), responseUrls: env.responseUrls },
    );
  const jobId = action.value ?? '';
  if (!JOB_ID_PATTERN.test(jobId))
    return void (await tell('This Cancel button is malformed; nothing was cancelled.'));
  const front = env.relay();
  // The requester is the common case: users.info is asked only when that is not who clicked.
  let result: CancelResult = await front.cancel(jobId, {
    platform: 'slack',
    userId,
    isModerator: false,
  });
  if (result.outcome === 'not-allowed') {
    const moderator = await canModerate(
      {
        platform: 'slack',
        userId,
        lookupUser: async (user) =>
          (await env.client.users.info({ user })).user as SlackUserRole | undefined,
      },
      { slackAdminUsers: asModeration(front.admission)?.slackAdminUsers ?? [] },
    );
    if (moderator)
      result = await front.cancel(jobId, { platform: 'slack', userId, isModerator: true });
  }
  switch (result.outcome) {
    case 'cancelled':
      // The relay turns the status message into "Cancelled".
      return;
    case 'already-finished':
      return void (await tell(
        result.state === 'done'
          ? 'This job had already finished: its image was delivered. Nothing was cancelled.'
          : `This job had already ended (${result.state}). Nothing was cancelled.`,
      ));
    case 'not-allowed':
      return void (await tell(NOT_YOURS_TO_CANCEL));
    case 'unknown':
      return void (await tell(
        'This job is no longer known here (it ended a while ago); nothing was cancelled.',
      ));
  }
}

/** The Cancel button. */
export const cancelAction: SlackAction = { actionId: CANCEL_ACTION_ID, handle: cancel };
