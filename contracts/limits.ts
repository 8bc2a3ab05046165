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
