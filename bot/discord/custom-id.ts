/**
 * Button `custom_id`s carry everything a click needs besides the prompt (which the message's
 * embed holds), so buttons keep working after any restart: `name|arg|arg`, at most 100 chars.
 * Components are dispatched on `name` (see `components/index.ts`).
 */
import { ASPECT_SIZES, type AspectRatio } from '../../contracts/job.ts';

/** Discord's limit on `custom_id`. */
export const CUSTOM_ID_MAX = 100;

/** A job size as buttons carry it: an aspect name, or `WxH` for anything else. */
export type SizeSpec = { aspect: AspectRatio } | { width: number; height: number };

/** Build a `custom_id`; throws when it would exceed Discord's limit or hold a separator. */
export function encodeCustomId(name: string, ...args: Array<string | number>): string {
  const parts = [name, ...args.map(String)];
  if (parts.some((p) => p.includes('|'))) throw new Error('custom_id parts cannot contain "|"');
  const id = parts.join('|');
  if (id.length === 0 || id.length > CUSTOM_ID_MAX)
    throw new Error(`custom_id must be 1-${CUSTOM_ID_MAX} characters, got ${id.length}`);
  return id;
}

/** Split a `custom_id` into its component name and arguments. */
export function decodeCustomId(customId: string): { name: string; args: string[] } {
  const [name = '', ...args] = customId.split('|');
  return { name, args };
}

/** The size of a job, as an aspect name when it is one of ours. */
export function sizeSpecOf(width: number, height: number): SizeSpec {
  for (const [aspect, size] of Object.entries(ASPECT_SIZES))
    if (size.width === width && size.height === height) return { aspect: aspect as AspectRatio };
  return { width, height };
}

/** `16:9` or `1000x600`. */
export function encodeSize(spec: SizeSpec): string {
  return 'aspect' in spec ? spec.aspect : `${spec.width}x${spec.height}`;
}

/** The request fields for an encoded size; `{}` when unreadable (the default size applies). */
export function decodeSize(text: string | undefined): SizeSpec | Record<string, never> {
  if (!text) return {};
  if (text in ASPECT_SIZES) return { aspect: text as AspectRatio };
  const m = /^(\d{2,4})x(\d{2,4})$/.exec(text);
  return m ? { width: Number(m[1]), height: Number(m[2]) } : {};
}
