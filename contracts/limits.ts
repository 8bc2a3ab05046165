/**
 * Prompt and size limits shared by every front end. Free of Node imports, so the browser
 * bundle (web-preview) can import it too.
 */

/** Longest prompt accepted, in characters (code points). */
export const PROMPT_MAX_CHARS = 1000;

/** Largest seed a generator accepts (seeds are 0 to 2^32 - 1). */
export const SEED_MAX = 2 ** 32 - 1;

/** Aspect ratios offered to users, and the pixel size each maps to (multiples of 64, ~1 MP). */
export const ASPECT_SIZES = {
  '1:1': { width: 1024, height: 1024 },
  '16:9': { width: 1344, height: 768 },
  '9:16': { width: 768, height: 1344 },
  '4:3': { width: 1152, height: 896 },
  '3:4': { width: 896, height: 1152 },
  '3:2': { width: 1216, height: 832 },
  '2:3': { width: 832, height: 1216 },
} as const;

/** An aspect ratio name from {@link ASPECT_SIZES}. */
export type AspectRatio = keyof typeof ASPECT_SIZES;
/** The aspect names, for choices in commands and the page. */
export const ASPECT_RATIOS = Object.keys(ASPECT_SIZES) as AspectRatio[];

/** The tasks a job can ask of a generator. */
export const JOB_TASKS = ['generate', 'vary', 'upscale'] as const;
/** One of {@link JOB_TASKS}. */
export type JobTask = (typeof JOB_TASKS)[number];

/** Most images one job makes (the grid). */
export const IMAGE_COUNT_MAX = 4;
/** Images a request makes when neither it nor a server/channel setting says otherwise. */
export const IMAGE_COUNT_DEFAULT = 4;

/**
 * Vary strengths (image-to-image denoising strength, 0 keeps the input, 1 ignores it), named
 * as Midjourney's "Vary (Subtle)" and "Vary (Strong)" buttons. Strong is the default, as
 * Midjourney's high variation mode is.
 */
export const VARY_STRENGTHS = { subtle: 0.35, strong: 0.75 } as const;
/** A named vary strength. */
export type VaryPreset = keyof typeof VARY_STRENGTHS;
/** The strength of a vary that names none. */
export const VARY_DEFAULT: VaryPreset = 'strong';
/** How much detail an upscale adds over the enlarged input (image-to-image strength). */
export const UPSCALE_STRENGTH = 0.3;

/** Largest side of a generated or varied image. */
export const IMAGE_MAX_SIDE = 2048;
/** Largest side of an upscaled image (an upscale doubles both sides). */
export const UPSCALE_MAX_SIDE = 4096;

/** The seed of image `index` of a job whose base seed is `seed`: `(seed + index) mod 2^32`. */
export function imageSeed(seed: number, index: number): number {
  return (seed + index) % 2 ** 32;
}

/** The seeds of the `count` images of a job with base seed `seed`. */
export function imageSeeds(seed: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => imageSeed(seed, i));
}

/**
 * The size an upscale of a `width`×`height` image makes, or undefined when it would be over
 * `maxSide` a side: the deployment's generators' upscale limit (`upscaleMaxSide` in
 * backends.ts, `/healthz`'s `upscaleMaxSide`), never more than {@link UPSCALE_MAX_SIDE}.
 */
export function upscaleSize(
  width: number,
  height: number,
  maxSide: number = UPSCALE_MAX_SIDE,
): { width: number; height: number } | undefined {
  const limit = Math.min(maxSide, UPSCALE_MAX_SIDE);
  const w = width * 2;
  const h = height * 2;
  return w <= limit && h <= limit ? { width: w, height: h } : undefined;
}

/**
 * Why an upscale of a `width`×`height` image cannot run where upscales stop at `maxSide`
 * ({@link upscaleSize}), said to the user; undefined when it can.
 */
export function upscaleRefusal(width: number, height: number, maxSide: number): string | undefined {
  if (upscaleSize(width, height, maxSide)) return undefined;
  if (maxSide <= 0) return "this server's image generator does not upscale; try a vary instead";
  const limit = Math.min(maxSide, UPSCALE_MAX_SIDE);
  return (
    `this image is ${width}×${height}; its upscale would be ${width * 2}×${height * 2}, over the ` +
    `${limit} pixels a side ${limit < UPSCALE_MAX_SIDE ? "this server's image generator upscales to" : 'an upscale may have'}` +
    ` (images of at most ${Math.floor(limit / 2)} a side can be upscaled)`
  );
}

/**
 * The size a vary of a `width`×`height` image makes: the same aspect, scaled down so no side is
 * over {@link IMAGE_MAX_SIDE}, both sides rounded to multiples of 16 (at least 64).
 */
export function varySize(width: number, height: number): { width: number; height: number } {
  const scale = Math.min(1, IMAGE_MAX_SIDE / Math.max(width, height));
  const side = (n: number) =>
    Math.max(64, Math.min(IMAGE_MAX_SIDE, Math.round((n * scale) / 16) * 16));
  return { width: side(width), height: side(height) };
}
