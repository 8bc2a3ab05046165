/**
 * The frames the relay sends a WebSocket client following a job (`/ws?jobId=...`). Text frames
 * are JSON; an `image` or `preview` frame is followed by exactly ONE binary frame holding its
 * bytes. A job's last frame is a `status` in a final state, then the socket closes with 1000 and
 * the state as the reason.
 */
import type { JobTask } from './limits.ts';
import type { JobState } from './push.ts';
import type { WithheldCount } from './safety.ts';

/** A job's state. While generating it may carry the generator's progress (0–1, step of steps). */
export interface StatusFrame {
  type: 'status';
  jobId: string;
  state: JobState;
  /** Queued jobs ahead (queued only). */
  position?: number;
  /** Generating: how far the generator has got, 0–1 (`step / steps`). */
  progress?: number;
  step?: number;
  steps?: number;
  error?: { code: string; message: string };
  generator?: string;
  demo?: boolean;
}

/** A low-resolution preview of the image forming (≤ 64 KiB); one binary frame follows. */
export interface PreviewFrame {
  type: 'preview';
  jobId: string;
  contentType: string;
  bytes: number;
  width?: number;
  height?: number;
}

/** Largest preview the relay forwards, in bytes. */
export const PREVIEW_MAX_BYTES = 64 * 1024;

/** One finished image (`index` of `count`); one binary frame with its bytes follows. */
export interface ImageFrame {
  type: 'image';
  jobId: string;
  index: number;
  count: number;
  task: JobTask;
  contentType: string;
  bytes: number;
  seed?: number | undefined;
  width?: number | undefined;
  height?: number | undefined;
  generationMs?: number | undefined;
  spoiler?: true;
  withheld?: WithheldCount;
}

/** Any JSON frame the relay sends. */
export type ServerFrame = StatusFrame | PreviewFrame | ImageFrame;
