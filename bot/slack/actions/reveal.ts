/**
 * "Show image" under an image output safety blurred (`spoiler`): the original goes to the person
 * who clicked, and to nobody else. Slack has no ephemeral files (an ephemeral message can carry
 * no upload, and an image block's `slack_file` must be a file its viewer can access), so the
 * original is uploaded into the clicker's DM with the app (`conversations.open`, scope
 * `im:write`) and the click is answered ephemerally. The original is read from the relay's
 * memory at click time; once it left (TTL, byte cap, restart, another relay) the click says so.
 */
import { REVEAL_ACTION_PATTERN } from '../creative.ts';
import { tellUser } from '../replies.ts';
import type { SlackAction, SlackActionArgs } from '../types.ts';
import { previewable, uploadFiles } from '../upload.ts';

/** Said when the original is no longer in the relay's memory. */
export const REVEAL_GONE =
  'The original of this image is no longer in memory (imagine keeps results for RESULT_TTL_SECONDS and never on disk; it may also have restarted), so only the blurred copy is left. Run the prompt again with the same seed to make it again.';

/** Said when the app was installed without `im:write`. */
export const REVEAL_NO_SCOPE =
  "I can't send you the original: this app was installed without the `im:write` scope, which a direct message from it needs. Ask a workspace admin to reinstall imagine from its current manifest.";

function slackError(err: unknown): string | undefined {
  return (err as { data?: { error?: string } } | null)?.data?.error;
}

async function reveal(args: SlackActionArgs): Promise<void> {
  const { body, action, env } = args;
  await args.ack();
  const userId = body.user.id;
  const channelId = body.container?.channel_id ?? body.channel?.id;
  const tell = (text: string) =>
    tellUser(
      env.client,
      env.logger,
      { channelId: channelId ?? userId, userId, responseUrl: body.response_url },
      text,
      { now: env.now(), responseUrls: env.responseUrls },
    );
  const match = /^([A-Za-z0-9_-]{1,100})\|([0-3])$/.exec(action.value ?? '');
  if (!match) return void (await tell('This Show image button is malformed; nothing was shown.'));
  const [, jobId, index] = match;
  const image = env.relay().results.image(jobId!, Number(index));
  if (!image) return void (await tell(REVEAL_GONE));
  let dm: string | undefined;
  try {
    const opened = await env.client.conversations.open({ users: userId });
    dm = opened.channel?.id;
  } catch (err) {
    const code = slackError(err);
    if (code === 'missing_scope') return void (await tell(REVEAL_NO_SCOPE));
    env.logger.warn({ err, userId }, 'slack: could not open a DM for Show image');
    return void (await tell(
      `Slack would not open a direct message with you (${code ?? 'error'}).`,
    ));
  }
  if (!dm) return void (await tell('Slack would not open a direct message with you.'));
  const file = await previewable(image.bytes, image.contentType);
  const where = channelId && !channelId.startsWith('D') ? ` in <#${channelId}>` : '';
  try {
    await uploadFiles(
      env.client,
      env.budget,
      {
        channelId: dm,
        initialComment: `The original of image ${Number(index) + 1} of job \`${jobId}\`${where}, which this workspace's safety setting showed blurred. Only you can see it here.`,
      },
      [
        {
          bytes: file?.bytes ?? image.bytes,
          filename: `imagine-${image.seed}.${file?.extension ?? 'webp'}`,
          altText: 'The original of an image shown blurred by the safety setting',
        },
      ],
    );
  } catch (err) {
    env.logger.warn({ err, userId }, 'slack: Show image upload failed');
    return void (await tell(
      `Slack refused the upload of the original (${slackError(err) ?? 'error'}).`,
    ));
  }
  await tell(
    'Sent you the original in your direct messages with imagine; only you can see it there.',
  );
}

/** The "Show image" buttons. */
export const revealAction: SlackAction = {
  actionId: REVEAL_ACTION_PATTERN,
  handle: reveal,
};
