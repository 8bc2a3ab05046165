/**
 * Telling one user something only they see: through the `response_url` Slack handed us (valid
 * 30 minutes, 5 uses) or, when there is none or it fails, `chat.postEphemeral`.
 * Every refusal and failure says what to do next.
 */
import type { WebClient } from '@slack/web-api';
import type { Logger } from 'pino';

/** How long Slack honours a response_url. */
export const RESPONSE_URL_TTL_MS = 30 * 60 * 1000;

/** A coded error as it reaches the Slack layer (an ImagineError or a delivery event's error). */
export interface CodedProblem {
  code: string;
  message: string;
  retryAfterSeconds?: number | undefined;
}

function inTime(seconds: number | undefined): string {
  if (seconds === undefined || seconds <= 0) return 'in a little while';
  if (seconds < 90) return `in ${Math.ceil(seconds)} seconds`;
  return `in ${Math.ceil(seconds / 60)} minutes`;
}

/** One sentence (or two) for a user: what went wrong and what to do. */
export function adviceFor(problem: CodedProblem): string {
  switch (problem.code) {
    case 'INVALID_PROMPT':
      return `That prompt doesn't work: ${problem.message}. Try \`/imagine a fox in space\`.`;
    case 'INVALID_PARAMETERS':
    case 'BAD_REQUEST':
      return `${problem.message}. Usage: \`/imagine <prompt> [--ar 16:9] [--seed 42]\`.`;
    case 'BLOCKED_CONTENT':
      return `That prompt isn't allowed here (${problem.message}). Rephrase it and try again.`;
    case 'RATE_LIMITED':
      // The policy's message says which limit, and usually when it resets.
      return /try again/i.test(problem.message)
        ? `${problem.message.charAt(0).toUpperCase()}${problem.message.slice(1)}.`
        : `${problem.message.replace(/\.$/, '')}. Try again ${inTime(problem.retryAfterSeconds)}.`;
    case 'QUEUE_FULL':
      return `The queue is full right now. Try again ${inTime(problem.retryAfterSeconds)}.`;
    case 'CHANNEL_NOT_ALLOWED':
      return `Images aren't enabled in this channel (${problem.message}). Try an allowed channel or a DM with me.`;
    case 'JOB_EXPIRED':
    case 'GENERATOR_TIMEOUT':
      return 'The image took too long and was dropped. Press Retry to queue it again.';
    case 'GENERATOR_UNAVAILABLE':
    case 'QUEUE_UNAVAILABLE':
      return 'The image service is unavailable at the moment. Press Retry in a minute.';
    default:
      return `Something went wrong (${problem.code}: ${problem.message}). Press Retry, or try again later.`;
  }
}

/** Where an ephemeral goes. */
export interface EphemeralTarget {
  channelId: string;
  userId: string;
  threadTs?: string | undefined;
  responseUrl?: string | undefined;
  /** When the response_url was issued (ms); absent = assume fresh. */
  responseUrlIssuedAt?: number | undefined;
}

/** Send `text` to one user only. Never throws: a lost ephemeral is logged, not fatal. */
export async function tellUser(
  client: WebClient,
  logger: Logger,
  target: EphemeralTarget,
  text: string,
  now: number = Date.now(),
): Promise<void> {
  const fresh =
    target.responseUrlIssuedAt === undefined ||
    now - target.responseUrlIssuedAt < RESPONSE_URL_TTL_MS;
  if (target.responseUrl && fresh) {
    try {
      const res = await fetch(target.responseUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ response_type: 'ephemeral', replace_original: false, text }),
        // A hung response_url must not hold up the job's later updates: fall back instead.
        signal: AbortSignal.timeout(10_000),
      });
      if (res.ok) return;
      logger.warn({ status: res.status }, 'slack response_url refused; falling back');
    } catch (err) {
      logger.warn({ err }, 'slack response_url failed; falling back');
    }
  }
  try {
    await client.chat.postEphemeral({
      channel: target.channelId,
      user: target.userId,
      text,
      ...(target.threadTs ? { thread_ts: target.threadTs } : {}),
    });
  } catch (err) {
    logger.warn({ err, channel: target.channelId }, 'slack ephemeral could not be sent');
  }
}
