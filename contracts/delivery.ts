/**
 * The port between the relay and the chat platforms: the relay hands each job's state changes
 * to the deliverer of the job's platform (Discord, Slack), which lives in bot/.
 */
import type { JobTask } from './limits.ts';
import type { JobState, PushSource } from './push.ts';
import type { ReplyTarget } from './seal.ts';

/** One finished image of a job, in memory. */
export interface DeliveredImage {
  bytes: Buffer;
  contentType: string;
  /** The seed that makes this image alone (a job of count 1 with it). */
  seed: number;
  width: number;
  height: number;
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
  /** A vary's or upscale's source image (which job, which image, its seed and size). */
  source?: PushSource | undefined;
  createdAt: number;
  generationMs?: number | undefined;
  generator?: string | undefined;
  error?: { code: string; message: string } | undefined;
  /** The finished images, in order (a `done` event); empty or absent otherwise. */
  images?: DeliveredImage[] | undefined;
}

/** Delivers job events to one chat platform. */
export interface ChatDeliverer {
  readonly platform: ReplyTarget['platform'];
  deliver(target: ReplyTarget, event: DeliveryEvent): Promise<void>;
}
