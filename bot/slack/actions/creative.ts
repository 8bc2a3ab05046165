/**
 * U1–U4, V1–V4, Vary (Subtle/Strong), Upscale 2× and Re-roll: each click reads its job from the
 * button's value (see `creative.ts`) and starts it under the clicked card, in the clicker's
 * name, through the one submit path (limits and moderation apply as to `/imagine`).
 */
import { CREATIVE_ACTION_PATTERN, decodeButton, requestForClick } from '../creative.ts';
import { tellUser } from '../replies.ts';
import { startSlackJob } from '../start-job.ts';
import type { SlackAction } from '../types.ts';
import { clickOrigin, placeForClick } from './place.ts';

/** Every creative-loop button. */
export const creativeAction: SlackAction = {
  actionId: CREATIVE_ACTION_PATTERN,
  async handle(args) {
    await args.ack();
    const decoded = decodeButton(args.action.value);
    const request = decoded && requestForClick(args.action.action_id, decoded);
    if (!request) {
      const { channelId } = clickOrigin(args.body);
      await tellUser(
        args.env.client,
        args.env.logger,
        { channelId, userId: args.body.user.id, responseUrl: args.body.response_url },
        "This button doesn't carry a job I can read. Run `/imagine <prompt>` again.",
        { responseUrls: args.env.responseUrls },
      );
      return;
    }
    await startSlackJob(args.env, placeForClick(args.body), request);
  },
};
