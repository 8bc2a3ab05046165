/**
 * The generator port: turn a task, a prompt and parameters (and, for a vary or upscale, an input
 * image) into `count` images in one call.
 */
import type { ImageType } from '../contracts/image-types.ts';
import type { JobTask } from '../contracts/job.ts';

/** The input image of a vary or upscale, fetched and checked by the worker. */
export interface GeneratorInput {
  bytes: Buffer;
  contentType: ImageType;
  /** Its size in pixels (decoded, not claimed). */
  width: number;
  height: number;
}

/**
 * What a generator is asked for.
 * - `generate`: text to image, `seeds.length` images of `width`×`height`.
 * - `vary`: image to image from `input`, guided by the prompt, `strength` in (0, 1] (0.35
 *   "subtle", 0.75 "strong"); each output is `width`×`height`.
 * - `upscale`: one image of `width`×`height` (twice the input's sides) with detail added over
 *   the enlarged input at `strength`, not a plain resample.
 */
export interface GenerateRequest {
  task: JobTask;
  prompt: string;
  /** Size of every output image. */
  width: number;
  height: number;
  /** One seed per image, in order: `count` is `seeds.length` (1–4). */
  seeds: number[];
  steps: number;
  /** Required for `vary` and `upscale`, absent for `generate`. */
  input?: GeneratorInput | undefined;
  /** Image-to-image strength of a `vary` or `upscale`. */
  strength?: number | undefined;
  /** A model the user chose among those configured; unset: the backend's default. */
  model?: string | undefined;
}

/** One image a generator made. */
export interface GeneratedImage {
  bytes: Buffer;
  contentType: ImageType;
  seed: number;
  width: number;
  height: number;
  /** The generator's own safety score (0–1, higher is less safe), when it has a checker. */
  safetyScore?: number | undefined;
}

/**
 * How far a generation has got, as the backend reports it: step `step` of `steps` over the whole
 * call (every image of it), with the backend's latest preview when it sends one. The runner
 * forwards these to the relay (progress and cancel, issue 11); adapters call it at most once per
 * backend report and never after `generate` settles.
 */
export interface GenerateProgress {
  step: number;
  steps: number;
  preview?: { bytes: Buffer; contentType: ImageType };
}

/**
 * Options of one generator call. `signal` is the cancel: adapters stop the backend's work on
 * abort (A1111 interrupt, ComfyUI interrupt and queue delete, Replicate cancel) and reject.
 */
export interface GenerateOptions {
  signal: AbortSignal;
  onProgress?: (progress: GenerateProgress) => void;
  /**
   * Whether a preview with the report of step `step` of `steps` would be used (absent: yes). A
   * generator that makes previews itself, at a cost, asks before making one: the worker says no
   * for the last step (the result follows at once) and for a job whose previews are withheld.
   */
  wantsPreview?: (step: number, steps: number) => boolean;
}

/** Anything that makes images. Errors are `ImagineError`s with `GENERATOR_*` codes. */
export interface Generator {
  /** Short name shown to users ("demo", "modal", "http", "a1111", ...). */
  readonly name: string;
  /** Make `request.seeds.length` images, in the order of the seeds, in one call. */
  generate(request: GenerateRequest, options: GenerateOptions): Promise<GeneratedImage[]>;
}
