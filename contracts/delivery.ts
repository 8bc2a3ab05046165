/**
 * The port between the relay and the chat platforms: the relay hands each job's state changes
 * to the deliverer of the job's platform (Discord, Slack), which lives in bot/.
 */
import type { JobTask } from './limits.ts';
import type { JobState, PushSource, TerminalState } from './push.ts';
import type { WithheldCount } from './safety.ts';
import type { ReplyTarget } from './seal.ts';

/** One finished image of a job, in memory. */
export interface DeliveredImage {
  bytes: Buffer;
  contentType: string;
  /** The seed that makes this image alone (a job of count 1 with it). */
  seed: number;
  width: number;
  height: number;
  /** Output safety flagged it and the scope's setting is `spoiler`: hide it behind a click. */
  spoiler?: boolean | undefined;
}

/**
 * A snapshot of a job handed to a chat deliverer. Besides its state, it carries what a button
 * under the result needs to re-create a job from it without anything stored: the task, prompt,
 * base seed and size, steps, count and strength (Re-roll: same prompt, new seeds), and each
 * image's own seed and size (U1–U4 / V1–V4: the source image itself is the attachment or file
 * the button sits under).
 */
export interface DeliveryEvent {
  jobId: string;
  state: JobState;
  position?: number | undefined;
  /**
   * How far a `generating` job has got, 0–1, as its generator reports it (absent: no report
   * yet, or a generator that reports none). Deliverers show it as a percentage.
   */
  progress?: number | undefined;
  /** `generate` when unknown (a job from before the creative loop). */
  task?: JobTask | undefined;
  prompt?: string | undefined;
  /** The job's base seed: image i has `(seed + i) mod 2^32`. */
  seed?: number | undefined;
  /** Size of each output image. */
  width?: number | undefined;
  height?: number | undefined;
  /** Images the job makes (1–4). */
  count?: number | undefined;
  steps?: number | undefined;
  /** A vary's or upscale's image-to-image strength. */
  strength?: number | undefined;
  /** The model the job asked for, when it named one (Retry asks for it again). */
  model?: string | undefined;
  /** A vary's or upscale's source image (which job, which image, its seed and size). */
  source?: PushSource | undefined;
  createdAt: number;
  generationMs?: number | undefined;
  generator?: string | undefined;
  error?: { code: string; message: string } | undefined;
  /** Output safety: how many of the job's images were blocked or held, when any was. */
  withheld?: WithheldCount | undefined;
  /** The finished images, in order (a `done` event); empty or absent otherwise. */
  images?: DeliveredImage[] | undefined;
  /**
   * Output safety review: the event is about one held image of a job whose user already has an
   * answer (the job's other images, or an earlier decision). It goes beside that answer as a
   * message of its own and never replaces it.
   */
  beside?: { index: number; of: number } | undefined;
}

/** Finished images still in the relay's memory (its TTL buffer), as chat buttons reach them. */
export interface ResultImages {
  /** Image `index` of a finished job's delivered images; undefined once it left memory. */
  image(jobId: string, index: number): DeliveredImage | undefined;
}

/** Who presses a chat Cancel button: the requester of the job, or a moderator of its scope. */
export interface CancelRequester {
  platform: 'discord' | 'slack' | 'web';
  userId: string;
  /** The adapter checked the platform's moderator permission where the button was pressed. */
  isModerator: boolean;
}

/**
 * What came of a cancel. `cancelled`: the job was queued or running and is now `cancelled` (every
 * channel is told once, by the relay); `already-finished`: it had ended (`state`), nothing
 * changed; `not-allowed`: the requester is neither the job's requester nor a moderator;
 * `unknown`: no such job (or it finished long ago).
 */
export type CancelResult =
  | { outcome: 'cancelled'; jobId: string }
  | { outcome: 'already-finished'; jobId: string; state: TerminalState }
  | { outcome: 'not-allowed'; jobId: string }
  | { outcome: 'unknown'; jobId: string };

/** Delivers job events to one chat platform. */
export interface ChatDeliverer {
  readonly platform: ReplyTarget['platform'];
  deliver(target: ReplyTarget, event: DeliveryEvent): Promise<void>;
  /** Post an image held for review to its moderators' channel (platforms that can). */
  postForReview?(held: HeldImage): Promise<void>;
}

/** An image output safety holds for a moderator, in the relay's memory only. */
export interface HeldImage {
  jobId: string;
  /** The image's place in its job. */
  index: number;
  image: DeliveredImage;
  prompt?: string | undefined;
  generator?: string | undefined;
  createdAt: number;
  /** When it was held (ms). */
  heldAt: number;
  /** The original reply target, opened: Approve delivers there. */
  target: ReplyTarget;
  /** The scope's moderators' channel. */
  reviewChannelId: string;
  /** For the audit log and the moderators' message. */
  platform: 'web' | 'discord' | 'slack';
  scopeId?: string | undefined;
  userId?: string | undefined;
  score?: number | undefined;
  threshold: number;
  /** How many images the job made, how many of them were delivered and blocked at once. */
  of?: number | undefined;
  delivered?: number | undefined;
  blocked?: number | undefined;
}

/** Who acts on a held image. */
export interface ReviewActor {
  id: string;
  name?: string | undefined;
  platform: 'web' | 'discord' | 'slack';
  scopeId?: string | undefined;
}

/** What came of a moderator's click. */
export type ReviewOutcome = 'approved' | 'rejected' | 'expired';

/** The relay's held images, as the chat adapters' buttons reach them. */
export interface ReviewDesk {
  /** Approve (deliver to the original target) or reject (tell the user); `expired` when gone. */
  decide(
    jobId: string,
    index: number,
    verdict: 'approve' | 'reject',
    actor: ReviewActor,
  ): Promise<ReviewOutcome>;
}

/** Longest alt text each surface takes (Discord attachment `description`, Slack `alt_txt`). */
export const ALT_TEXT_MAX = { discord: 1024, slack: 1000, web: 1000 } as const;

/**
 * Alt text for a delivered image, from its prompt: whitespace folded, control and bidi
 * characters dropped, cut to `maxChars` code points (with an ellipsis) so no platform refuses it.
 */
export function imageAltText(prompt: string | undefined, maxChars: number): string {
  const clean = (prompt ?? '')
    // biome-ignore lint/suspicious/noControlCharactersInRegex: removing them is the point
    .replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/gu, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  const text = clean === '' ? 'Generated image' : clean;
  const chars = [...text];
  return chars.length <= maxChars ? text : `${chars.slice(0, maxChars - 1).join('')}…`;
}
