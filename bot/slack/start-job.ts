/**
 * The one way every Slack entry (slash command, DM, Home, buttons) starts a job: check the
 * request, post the status message (its ts goes into the sealed reply target), submit. A
 * refusal deletes that status message again and tells the user, ephemerally, what to do:
 * no stale message and no half-created job.
 */
import { asImagineError, ImagineError } from '../../contracts/errors.ts';
import type { SlackTarget } from '../../contracts/seal.ts';
import { parseImagineRequest } from '../../submit/submit.ts';
import { queuedLine, statusMessage } from './blocks.ts';
import { adviceFor, tellUser } from './replies.ts';
import type { SlackEnv } from './types.ts';

/** Where a job is asked for and answered. */
export interface JobPlace {
  teamId?: string | undefined;
  channelId: string;
  userId: string;
  userName?: string | undefined;
  /** Thread the status message goes into (buttons clicked inside a thread). */
  threadTs?: string | undefined;
  responseUrl?: string | undefined;
  /** Reuse this message as the status message (Retry) instead of posting one. */
  statusTs?: string | undefined;
  /** DMs: the image goes beside the status message, not into its thread. */
  inline?: boolean | undefined;
}

/** Errors from chat.postMessage that mean "the bot can't post here". */
const CANNOT_POST = new Set([
  'not_in_channel',
  'channel_not_found',
  'is_archived',
  'restricted_action',
]);

/** The Slack file a vary or upscale starts from, if it is one. */
function slackInputFile(request: Record<string, unknown>): string | undefined {
  const image = (request.input as { image?: { kind?: unknown; fileId?: unknown } } | undefined)
    ?.image;
  return image?.kind === 'slack-file' && typeof image.fileId === 'string'
    ? image.fileId
    : undefined;
}

function slackErrorCode(err: unknown): string | undefined {
  return (err as { data?: { error?: string } } | null)?.data?.error;
}

/** Start one job; resolves `true` when it is queued (refusals are told to the user). */
export async function startSlackJob(
  env: SlackEnv,
  place: JobPlace,
  request: Record<string, unknown>,
): Promise<boolean> {
  const { client, logger } = env;
  const tell = (text: string, channelId = place.channelId) =>
    tellUser(
      client,
      logger,
      {
        channelId,
        userId: place.userId,
        threadTs: place.threadTs,
        responseUrl: place.responseUrl,
      },
      text,
      { now: env.now(), responseUrls: env.responseUrls },
    );

  let prompt: string;
  try {
    // A dry check first, so a bad prompt never gets a status message at all.
    prompt = parseImagineRequest(request).prompt;
  } catch (err) {
    await tell(adviceFor(asImagineError(err)));
    return false;
  }

  let channelId = place.channelId;
  let statusTs = place.statusTs;
  let posted = false;
  let inline = place.inline ?? false;
  if (!statusTs) {
    const status = statusMessage(place.userId, prompt, queuedLine(undefined));
    try {
      const res = await client.chat.postMessage({
        channel: channelId,
        ...status,
        ...(place.threadTs ? { thread_ts: place.threadTs } : {}),
        unfurl_links: false,
      });
      channelId = res.channel ?? channelId;
      statusTs = res.ts;
    } catch (err) {
      if (!CANNOT_POST.has(slackErrorCode(err) ?? '')) throw err;
      // The bot is not in this conversation (a private channel, someone else's DM): answer
      // in the user's DM with the app instead, and say so.
      const res = await client.chat.postMessage({ channel: place.userId, ...status });
      channelId = res.channel ?? place.userId;
      statusTs = res.ts;
      inline = true;
      await tell(
        "I can't post in this conversation, so your image is coming to our DM. To get it here, invite me with `/invite @imagine`.",
        place.channelId,
      );
    }
    posted = true;
  }

  const target: SlackTarget = {
    platform: 'slack',
    channelId,
    userId: place.userId,
    ...(place.teamId ? { teamId: place.teamId } : {}),
    ...(statusTs ? { statusTs } : {}),
    ...(place.threadTs && !inline ? { threadTs: place.threadTs } : {}),
    ...(place.responseUrl
      ? { responseUrl: place.responseUrl, responseUrlIssuedAt: env.now() }
      : {}),
    ...(inline ? { inline: true } : {}),
    ...(slackInputFile(request) ? { inputFileId: slackInputFile(request) } : {}),
  };
  try {
    await env.relay().submit({
      request,
      origin: {
        platform: 'slack',
        userId: place.userId,
        ...(place.userName ? { userName: place.userName } : {}),
        ...(place.teamId ? { scopeId: place.teamId } : {}),
        channelId: place.channelId,
      },
      replyTarget: target,
    });
    return true;
  } catch (err) {
    const problem = asImagineError(err);
    if (!(err instanceof ImagineError)) logger.error({ err }, 'slack submit failed');
    if (posted && statusTs) {
      await client.chat
        .delete({ channel: channelId, ts: statusTs })
        .catch((e) => logger.warn({ err: e }, 'slack status message could not be deleted'));
    }
    await tell(adviceFor(problem));
    return false;
  }
}
