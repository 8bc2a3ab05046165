/**
 * Output safety `review` on Slack: an image held for a moderator goes to the workspace's
 * review channel (`review_channel`) as a blurred copy (Slack has no spoilers) with the prompt,
 * who asked, the score and the threshold, and a message with Approve / Reject buttons. The held
 * original stays in the relay's memory; the buttons carry only `<jobId>|<index>`.
 */
import type { types } from '@slack/bolt';
import type { WebClient } from '@slack/web-api';
import sharp from 'sharp';
import type { HeldImage } from '../../contracts/delivery.ts';
import { escapeTruncated, truncate } from './blocks.ts';
import type { SlackRateBudget } from './rate-budget.ts';
import { uploadFiles } from './upload.ts';

/** The review buttons' action ids. */
export const REVIEW_ACTION_IDS = {
  approve: 'imagine_review_approve',
  reject: 'imagine_review_reject',
} as const;

/** A heavily blurred, smaller copy of a flagged image (what Slack shows instead of a spoiler). */
export async function blurredCopy(bytes: Buffer): Promise<Buffer> {
  return sharp(bytes)
    .resize(512, 512, { fit: 'inside', withoutEnlargement: true })
    .blur(24)
    .png()
    .toBuffer();
}

/** What the review message says once a moderator has acted (or found it expired). */
export const SLACK_REVIEW_OUTCOME_TEXT = {
  approved: (by: string) => `:white_check_mark: Approved by <@${by}>: delivered to the requester.`,
  rejected: (by: string) =>
    `:no_entry: Rejected by <@${by}>: the requester was told; nothing was delivered.`,
  expired: () =>
    ':hourglass: This held image expired: it is no longer in memory (the relay restarted, or it was held longer than SAFETY_REVIEW_TTL_SECONDS). Nothing was delivered; the requester can run the prompt again with the same seed.',
} as const;

/** The moderators' text about one held image (mrkdwn, prompt escaped). */
export function reviewText(held: HeldImage): string {
  const who = held.userId ? `<@${held.userId}>` : 'someone';
  const score = held.score === undefined ? '?' : held.score.toFixed(2);
  return `:warning: Held for review: ${who} asked for “${escapeTruncated(held.prompt ?? '', 500)}” (image ${held.index + 1} of job \`${held.jobId}\`). Safety score ${score} ≥ threshold ${held.threshold}.`;
}

/** Post a held image to its review channel: the blurred copy, then the buttons. */
export async function postSlackReview(
  client: WebClient,
  budget: SlackRateBudget,
  held: HeldImage,
): Promise<void> {
  const text = reviewText(held);
  await uploadFiles(client, budget, { channelId: held.reviewChannelId, initialComment: text }, [
    {
      bytes: await blurredCopy(held.image.bytes),
      filename: `imagine-${held.image.seed}-held-blurred.png`,
      title: truncate(held.prompt ?? 'Held image', 250),
      altText: 'A blurred copy of an image held for moderator review',
    },
  ]);
  const value = `${held.jobId}|${held.index}`;
  const blocks: types.KnownBlock[] = [
    { type: 'section', text: { type: 'mrkdwn', text } },
    {
      type: 'actions',
      block_id: 'imagine_review',
      elements: [
        {
          type: 'button',
          action_id: REVIEW_ACTION_IDS.approve,
          style: 'primary',
          text: { type: 'plain_text', text: 'Approve' },
          value,
        },
        {
          type: 'button',
          action_id: REVIEW_ACTION_IDS.reject,
          style: 'danger',
          text: { type: 'plain_text', text: 'Reject' },
          value,
        },
      ],
    },
  ];
  await client.chat.postMessage({ channel: held.reviewChannelId, text, blocks });
}
