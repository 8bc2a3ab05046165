/** Checks done before sending, and every error put into words a person understands. */
import { formatDuration, formatPer } from '../../contracts/duration.ts';
import type { Quota } from '../../contracts/errors.ts';
import { PROMPT_MAX_CHARS, SEED_MAX } from '../../contracts/limits.ts';

/** Characters as the server counts them: code points after whitespace runs become one space. */
export function promptLength(raw: string): number {
  return [...normalisePrompt(raw)].length;
}

/** The prompt as the server will see it. */
export function normalisePrompt(raw: string): string {
  return raw.replace(/[\t\n\r\v\f]+/g, ' ').trim();
}

/** Why a prompt cannot be sent, or undefined when it can. */
export function checkPrompt(raw: string): string | undefined {
  const length = promptLength(raw);
  if (length === 0) return 'Describe the image you want first: the prompt is empty.';
  if (length > PROMPT_MAX_CHARS) {
    const over = length - PROMPT_MAX_CHARS;
    return `Your prompt is ${length.toLocaleString('en')} characters; the limit is ${PROMPT_MAX_CHARS.toLocaleString('en')}. Please shorten it by ${over.toLocaleString('en')}.`;
  }
  return undefined;
}

/** Parse the optional seed box: a number, undefined when blank, or an error sentence. */
export function parseSeed(raw: string): { seed?: number; error?: string } {
  const text = raw.trim();
  if (text === '') return {};
  if (!/^\d+$/.test(text) || Number(text) > SEED_MAX)
    return {
      error: `The seed must be a whole number from 0 to ${SEED_MAX.toLocaleString('en')}, or left blank for a random one.`,
    };
  return { seed: Number(text) };
}

/** A wait in words: "12 seconds", "42 minutes", "1 hour 30 minutes" (at least a second). */
export function describeWait(seconds: number): string {
  return formatDuration(Math.max(1, seconds));
}

/** Elapsed time as shown next to a running job: "7 s", "1 min 05 s". */
export function formatElapsed(ms: number): string {
  const total = Math.floor(ms / 1000);
  if (total < 60) return `${total} s`;
  return `${Math.floor(total / 60)} min ${String(total % 60).padStart(2, '0')} s`;
}

/** A rate-limit window as people say it: "per hour", "per 30 minutes", "per day". */
export const describeWindow = formatPer;

/** " (at 19:47)" for a wait long enough that "in 40 minutes" would go stale on screen. */
function clockAt(waitSeconds: number, now: number): string {
  if (waitSeconds < 120) return '';
  const at = new Date(now + waitSeconds * 1000);
  return ` (at ${at.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })})`;
}

/**
 * A rate-limit refusal in plain words. With the 429's `quota` (the images-per-window limit):
 * how many images are left, how many the request may ask for now, and when the whole limit is
 * back; otherwise (jobs in progress, requests paused) the server's own sentence, with the wait.
 */
export function describeRateLimit(
  message: string,
  quota: Quota | undefined,
  waitSeconds: number | undefined,
  now: number = Date.now(),
): string {
  const wait = waitSeconds ?? quota?.resetSeconds;
  const again = wait === undefined ? ' later' : ` in ${describeWait(wait)}${clockAt(wait, now)}`;
  if (!quota) {
    const text = `${message.charAt(0).toUpperCase()}${message.slice(1)}.`;
    if (/try again/i.test(message)) return text;
    return wait === undefined
      ? `${text} Please wait a little and try again.`
      : `${text} You can try again${again}.`;
  }
  const per = describeWindow(quota.windowSeconds);
  const images = (n: number) => `${n} image${n === 1 ? '' : 's'}`;
  if (quota.of === 'user')
    return quota.remaining > 0
      ? `You have ${quota.remaining} of your ${images(quota.limit)} ${per} left: ask for ${quota.remaining} or fewer, or for more${again}.`
      : `You have made your ${images(quota.limit)} ${per}. You can make more${again}.`;
  return quota.remaining > 0
    ? `This site has ${quota.remaining} of its ${images(quota.limit)} ${per} left, for everyone: ask for ${quota.remaining} or fewer, or for more${again}.`
    : `This site has made its ${images(quota.limit)} ${per}, for everyone. More can be made${again}.`;
}

/**
 * What is left after a job was accepted (the 202's `quota`): "2 of your 3 images per hour left.",
 * or the site's, when fewer are left there for everyone.
 */
export function describeQuotaLeft(quota: Quota): string {
  const per = describeWindow(quota.windowSeconds);
  const images = (n: number) => `${n} image${n === 1 ? '' : 's'}`;
  const more = `more in ${describeWait(quota.resetSeconds)}`;
  if (quota.of === 'user')
    return quota.remaining > 0
      ? `${quota.remaining} of your ${images(quota.limit)} ${per} left.`
      : `That was the last of your ${images(quota.limit)} ${per}: ${more}.`;
  return quota.remaining > 0
    ? `This site has ${quota.remaining} of its ${images(quota.limit)} ${per} left, for everyone.`
    : `That was the last of this site’s ${images(quota.limit)} ${per}, for everyone: ${more}.`;
}

/** Why the server refused a request to start a job. */
export function describeRefusal(
  code: string,
  message: string,
  retryAfterSeconds: number | undefined,
  quota?: Quota,
): string {
  switch (code) {
    case 'INVALID_PROMPT':
      return `The server did not accept this prompt: ${message}.`;
    case 'INVALID_PARAMETERS':
    case 'INVALID_JSON':
    case 'BAD_REQUEST':
      return `The server did not accept these settings: ${message}.`;
    case 'RATE_LIMITED':
      return describeRateLimit(message, quota, retryAfterSeconds);
    case 'QUEUE_FULL':
      return `The queue is full right now. Please try again in ${describeWait(retryAfterSeconds ?? 60)}.`;
    case 'QUEUE_UNAVAILABLE':
      return 'The image queue cannot be reached right now. Please try again shortly.';
    case 'BLOCKED_CONTENT':
      return `This prompt is not allowed here: ${message}. Please try describing something else.`;
    case 'ORIGIN_NOT_ALLOWED':
      return 'This page is not allowed to use this server (its address is not in ALLOWED_ORIGINS).';
    case 'FORBIDDEN':
    case 'CHANNEL_NOT_ALLOWED':
      return `Making images is not allowed here right now: ${message}.`;
    case 'PAYLOAD_TOO_LARGE':
      return 'That request is too large for the server.';
    default:
      return `Something went wrong on the server (${code}). Please try again.`;
  }
}

/** Why a job ended without an image. */
export function describeJobFailure(code: string): string {
  switch (code) {
    case 'JOB_EXPIRED':
      return 'This image expired before it could be delivered. Try again to make it afresh.';
    case 'JOB_NOT_FOUND':
      return 'The server no longer knows this job (it may have restarted). Try again.';
    case 'GENERATOR_TIMEOUT':
      return 'The image generator took too long to answer.';
    case 'GENERATOR_UNAVAILABLE':
      return 'The image generator is unavailable right now.';
    case 'GENERATOR_AUTH':
      return 'The image generator refused this server’s credentials; the operator needs to fix the setup.';
    case 'GENERATOR_REJECTED':
      return 'The image generator refused this request: its setup cannot make it (a size, model or kind of image it does not offer).';
    case 'BLOCKED_CONTENT':
      return 'This prompt is not allowed here.';
    default:
      return 'The image generator could not make this image.';
  }
}

/** When the server cannot be reached at all. */
export const UNREACHABLE = 'The server cannot be reached. Check your connection, then try again.';

/** Image types the relay takes as an input image. */
export const INPUT_IMAGE_TYPES = ['image/png', 'image/jpeg', 'image/webp'] as const;

/** "20 MB", "512 KB", "1.5 MB" (powers of 1024, as the limits are configured). */
export function formatBytes(bytes: number): string {
  if (bytes >= 1024 * 1024) {
    const mb = bytes / (1024 * 1024);
    return `${Number.isInteger(mb) ? mb : mb.toFixed(1)} MB`;
  }
  if (bytes >= 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${bytes} bytes`;
}

/**
 * Why a file cannot be used as an input image before it is even sent (its type or size), or
 * undefined when it may be. `maxBytes` is the relay's limit when it said one.
 */
export function checkImageFile(
  file: { name: string; type: string; size: number },
  maxBytes: number | undefined,
): string | undefined {
  const name = file.name ? `“${file.name}”` : 'That file';
  if (!(INPUT_IMAGE_TYPES as readonly string[]).includes(file.type)) {
    if (file.type.startsWith('image/'))
      return `${name} is a ${file.type.slice(6).toUpperCase()} image; this server takes PNG, JPEG or WebP images.`;
    return `${name} is not an image. Choose a PNG, JPEG or WebP image.`;
  }
  if (file.size === 0) return `${name} is empty. Choose a PNG, JPEG or WebP image.`;
  if (maxBytes !== undefined && file.size > maxBytes)
    return `${name} is ${formatBytes(file.size)}; the largest image this server takes is ${formatBytes(maxBytes)}.`;
  return undefined;
}

/** Why the relay refused an input image the page sent (`POST /uploads`). */
export function describeUploadRefusal(
  code: string,
  message: string,
  maxBytes: number | undefined,
): string {
  switch (code) {
    case 'UNREACHABLE':
      return UNREACHABLE;
    case 'PAYLOAD_TOO_LARGE':
      return maxBytes !== undefined && !/memory/.test(message)
        ? `The server refused the image: it is over the ${formatBytes(maxBytes)} limit.`
        : `The server refused the image: ${message}.`;
    default:
      return `The server refused the image: ${message}.`;
  }
}

/** What the card says when a cancel did not cancel. */
export function describeCancel(
  result:
    | { outcome: 'already-finished'; state: string }
    | { outcome: 'unknown' }
    | { outcome: 'error'; code: string; message: string },
): string {
  switch (result.outcome) {
    case 'already-finished':
      if (result.state === 'done') return 'Too late to cancel: the images were already made.';
      if (result.state === 'cancelled') return 'This job was already cancelled.';
      return 'Nothing to cancel: the job had already ended.';
    case 'unknown':
      return 'Nothing to cancel: the server no longer knows this job.';
    case 'error':
      return result.code === 'UNREACHABLE'
        ? 'Could not cancel: the server cannot be reached. Try again.'
        : `Could not cancel (${result.code}): ${result.message}. Try again.`;
  }
}
