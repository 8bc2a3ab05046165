/**
 * Telling one user something only they see: through the `response_url` Slack handed us (valid
 * 30 minutes, 5 uses) or, when there is none or it fails, `chat.postEphemeral`.
 * Every refusal and failure says what to do next.
 */
import type { WebClient } from '@slack/web-api';
import type { Logger } from 'pino';
import { formatDuration } from '../../contracts/duration.ts';

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
  return `in ${formatDuration(seconds)}`;
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
    case 'JOB_CANCELLED':
      return 'Cancelled. Press Retry to queue it again.';
    case 'SAFETY_HELD':
      return `${problem.message.charAt(0).toUpperCase()}${problem.message.slice(1)}. It comes here if a moderator approves it.`;
    case 'SAFETY_BLOCKED':
      return `${problem.message.charAt(0).toUpperCase()}${problem.message.slice(1)}.`;
    default:
      return `Something went wrong (${problem.code}: ${problem.message}). Press Retry, or try again later.`;
  }
}

/** How many times Slack honours one response_url. */
export const RESPONSE_URL_USES = 5;

/**
 * What this relay knows of each response_url: when it was issued and how often it was used.
 * Slack honours one for 30 minutes and 5 posts; a use past either is refused, so it is not
 * tried. Memory only: another relay (or this one after a restart) may not know a URL's uses,
 * and then Slack's refusal is the signal to fall back.
 */
export class ResponseUrlTracker {
  private readonly urls = new Map<string, { issuedAt: number; uses: number }>();
  private readonly max: number;

  constructor(max = 10_000) {
    this.max = max;
  }

  /** Take one use of `url` if it has one left at `now`; `false` means do not post to it. */
  claim(url: string, issuedAt: number | undefined, now: number): boolean {
    let entry = this.urls.get(url);
    if (!entry) {
      entry = { issuedAt: issuedAt ?? now, uses: 0 };
      this.urls.set(url, entry);
      // Oldest first: a Map iterates in insertion order.
      for (const [key, value] of this.urls) {
        if (this.urls.size <= this.max && now - value.issuedAt < RESPONSE_URL_TTL_MS) break;
        this.urls.delete(key);
      }
    }
    if (issuedAt !== undefined && issuedAt < entry.issuedAt) entry.issuedAt = issuedAt;
    if (now - entry.issuedAt >= RESPONSE_URL_TTL_MS || entry.uses >= RESPONSE_URL_USES)
      return false;
    entry.uses += 1;
    return true;
  }

  /** Slack refused `url` (used up or expired): never try it again. */
  spent(url: string): void {
    const entry = this.urls.get(url);
    if (entry) entry.uses = RESPONSE_URL_USES;
    else this.urls.set(url, { issuedAt: 0, uses: RESPONSE_URL_USES });
  }
}

/** Where an ephemeral goes. */
export interface EphemeralTarget {
  channelId: string;
  userId: string;
  threadTs?: string | undefined;
  responseUrl?: string | undefined;
  /** When the response_url was issued (ms); absent = when this relay first saw it. */
  responseUrlIssuedAt?: number | undefined;
}

/** Options of {@link tellUser}. */
export interface TellOptions {
  now?: number;
  /** Counts response_url uses; without one every URL is tried once per call. */
  responseUrls?: ResponseUrlTracker | undefined;
}

/** Errors of chat.postEphemeral that mean "not in this conversation": a DM still reaches them. */
const EPHEMERAL_UNREACHABLE = new Set([
  'channel_not_found',
  'not_in_channel',
  'user_not_in_channel',
  'is_archived',
]);

function slackErrorOf(err: unknown): string | undefined {
  return (err as { data?: { error?: string } } | null)?.data?.error;
}

/**
 * Send `text` to one user only: the response_url while it has uses and time left, else
 * `chat.postEphemeral`, else (the bot cannot post in that conversation, e.g. a private channel
 * it was never invited to, once the response_url is spent) a DM from the app. Never throws: a
 * lost notice is logged, not fatal.
 */
export async function tellUser(
  client: WebClient,
  logger: Logger,
  target: EphemeralTarget,
  text: string,
  opts: TellOptions = {},
): Promise<void> {
  const now = opts.now ?? Date.now();
  const url = target.responseUrl;
  const usable =
    url !== undefined &&
    (opts.responseUrls
      ? opts.responseUrls.claim(url, target.responseUrlIssuedAt, now)
      : target.responseUrlIssuedAt === undefined ||
        now - target.responseUrlIssuedAt < RESPONSE_URL_TTL_MS);
  if (url && usable) {
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ response_type: 'ephemeral', replace_original: false, text }),
        // A hung response_url must not hold up the job's later updates: fall back instead.
        signal: AbortSignal.timeout(10_000),
      });
      if (res.ok) return;
      // 404 used_url / expired_url: this URL is done; later notices skip it.
      if (res.status === 404 || res.status === 410) opts.responseUrls?.spent(url);
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
    return;
  } catch (err) {
    if (!EPHEMERAL_UNREACHABLE.has(slackErrorOf(err) ?? '') || target.channelId === target.userId) {
      logger.warn({ err, channel: target.channelId }, 'slack ephemeral could not be sent');
      return;
    }
  }
  try {
    // Posting to a user id lands in the user's DM with the app.
    await client.chat.postMessage({ channel: target.userId, text });
  } catch (err) {
    logger.warn({ err, user: target.userId }, 'slack notice could not be sent by DM either');
  }
}
