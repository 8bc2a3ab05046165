/**
 * Per-user defaults (`/imagine-settings`): what a user's `/imagine` asks for when the request
 * itself does not say — aspect, number of images, steps, subtle or strong vary, and whether the
 * result is posted publicly or only to them (where the platform allows). Kept in the settings
 * store keyed by platform and user id; nothing about prompts or images is stored. Server
 * settings cap them when they are applied.
 */
import { z } from 'zod';
import {
  ASPECT_RATIOS,
  type AspectRatio,
  IMAGE_COUNT_MAX,
  type Origin,
  VARY_STRENGTHS,
  type VaryPreset,
} from '../contracts/job.ts';

/** Who sees a user's results: everyone in the channel, or only them. */
export const VISIBILITIES = ['public', 'private'] as const;
/** A visibility. */
export type Visibility = (typeof VISIBILITIES)[number];

const VARY_PRESETS = Object.keys(VARY_STRENGTHS) as [VaryPreset, ...VaryPreset[]];

/** The fields of a user's defaults, each optional (absent = the server's default). */
export const UserDefaultsSchema = z
  .object({
    aspect: z.enum(ASPECT_RATIOS as [AspectRatio, ...AspectRatio[]]).optional(),
    count: z.number().int().min(1).max(IMAGE_COUNT_MAX).optional(),
    steps: z.number().int().min(1).max(50).optional(),
    vary: z.enum(VARY_PRESETS).optional(),
    visibility: z.enum(VISIBILITIES).optional(),
  })
  .strict();
/** A user's stored defaults. */
export type UserDefaults = z.infer<typeof UserDefaultsSchema>;
/** A key of {@link UserDefaults}. */
export type UserDefaultKey = keyof UserDefaults;
/** A change: a value, or `null` to go back to the server's default. */
export type UserDefaultsChange = { [K in UserDefaultKey]?: UserDefaults[K] | null };

/** The order fields are shown and parsed in, with the names users type. */
export const USER_DEFAULT_FIELDS: ReadonlyArray<{
  key: UserDefaultKey;
  name: string;
  describe: string;
}> = [
  { key: 'aspect', name: 'aspect', describe: `aspect ratio (${ASPECT_RATIOS.join(', ')})` },
  { key: 'count', name: 'images', describe: `images per /imagine (1–${IMAGE_COUNT_MAX})` },
  { key: 'steps', name: 'steps', describe: 'denoising steps (1–50)' },
  { key: 'vary', name: 'vary', describe: 'V buttons vary subtly or strongly (subtle, strong)' },
  { key: 'visibility', name: 'visibility', describe: 'who sees results (public, private)' },
];

/**
 * Read stored JSON leniently: each valid field is kept, an invalid or unknown one dropped
 * (a value written by an older or newer version never breaks `/imagine`).
 */
export function readUserDefaults(raw: unknown): UserDefaults {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return {};
  const out: Record<string, unknown> = {};
  const shape = UserDefaultsSchema.shape;
  for (const { key } of USER_DEFAULT_FIELDS) {
    const value = (raw as Record<string, unknown>)[key];
    if (value === undefined) continue;
    const parsed = shape[key].safeParse(value);
    if (parsed.success && parsed.data !== undefined) out[key] = parsed.data;
  }
  return out as UserDefaults;
}

/** Apply a change to stored defaults. */
export function applyUserChange(current: UserDefaults, change: UserDefaultsChange): UserDefaults {
  const next: Record<string, unknown> = { ...current };
  for (const [key, value] of Object.entries(change)) {
    if (value === null) delete next[key];
    else if (value !== undefined) next[key] = value;
  }
  return readUserDefaults(next);
}

/**
 * The store key of a user: `platform:userId`. The web page has none (it remembers its choices
 * in the browser), nor has a request without a user.
 */
export function userKeyOf(origin: Pick<Origin, 'platform' | 'userId'>): string | undefined {
  if (origin.platform === 'web' || !origin.userId) return undefined;
  return `${origin.platform}:${origin.userId}`;
}

/** What `/imagine-settings` was asked to do. */
export type UserSettingsCommand =
  | { verb: 'show' }
  | { verb: 'reset' }
  | { verb: 'set'; change: UserDefaultsChange };

/** A coded refusal of a settings command, said to the user. */
export class UserSettingsError extends Error {}

/** Parse one `name=value` (value `default` clears it). */
export function parseUserDefault(name: string, raw: string): UserDefaultsChange {
  const n = name.trim().toLowerCase();
  const field = USER_DEFAULT_FIELDS.find(
    (f) => f.name === n || f.key === n || (n === 'count' && f.key === 'count'),
  );
  if (!field)
    throw new UserSettingsError(
      `unknown setting "${name}"; the settings are ${USER_DEFAULT_FIELDS.map((f) => f.name).join(', ')}`,
    );
  const v = raw.trim().toLowerCase();
  if (v === 'default' || v === 'clear') return { [field.key]: null };
  const value =
    field.key === 'count' || field.key === 'steps'
      ? /^\d{1,3}$/.test(v)
        ? Number(v)
        : undefined
      : field.key === 'visibility'
        ? v === 'me' || v === 'only-me' || v === 'only_me'
          ? 'private'
          : v
        : v;
  const parsed = UserDefaultsSchema.shape[field.key].safeParse(value);
  if (!parsed.success || parsed.data === undefined)
    throw new UserSettingsError(
      `${field.name} must be ${field.describe.replace(/^[^(]*\(/, '').replace(/\)$/, '')}`,
    );
  return { [field.key]: parsed.data };
}

/** Parse Slack's text: `` (show), `reset`, or `images=2 aspect=16:9 vary=subtle …`. */
export function parseUserSettingsText(text: string): UserSettingsCommand {
  const words = text.trim().split(/\s+/).filter(Boolean);
  if (words.length === 0 || (words.length === 1 && words[0]?.toLowerCase() === 'show'))
    return { verb: 'show' };
  if (words.length === 1 && words[0]?.toLowerCase() === 'reset') return { verb: 'reset' };
  let change: UserDefaultsChange = {};
  for (let i = 0; i < words.length; i++) {
    const word = words[i] ?? '';
    const eq = word.indexOf('=');
    if (eq > 0) {
      change = { ...change, ...parseUserDefault(word.slice(0, eq), word.slice(eq + 1)) };
      continue;
    }
    const value = words[i + 1];
    if (value === undefined)
      throw new UserSettingsError(`say a value for "${word}", e.g. \`images=2\``);
    change = { ...change, ...parseUserDefault(word, value) };
    i++;
  }
  return { verb: 'set', change };
}

/** What the server allows, for the settings answer. */
export interface UserDefaultCaps {
  maxImagesPerJob: number;
  maxSteps: number;
}

/** Say a user's defaults for people, with what the server's caps make of them. */
export function formatUserDefaults(
  defaults: UserDefaults,
  caps: UserDefaultCaps,
  opts: { privateSupported: boolean },
): string {
  const lines = ['Your /imagine defaults:'];
  for (const f of USER_DEFAULT_FIELDS) {
    const value = defaults[f.key];
    let text = value === undefined ? 'server default' : String(value);
    if (f.key === 'count' && typeof value === 'number' && value > caps.maxImagesPerJob)
      text += ` (this server allows ${caps.maxImagesPerJob}, so ${caps.maxImagesPerJob} here)`;
    if (f.key === 'steps' && typeof value === 'number' && value > caps.maxSteps)
      text += ` (this server allows ${caps.maxSteps}, so ${caps.maxSteps} here)`;
    if (f.key === 'visibility' && value === 'private' && !opts.privateSupported)
      text += ' (results here are always public: this platform cannot post images to you only)';
    lines.push(`• ${f.name}: ${text} — ${f.describe}`);
  }
  lines.push('Change one with `name=value`, clear one with `name=default`, or `reset` all.');
  return lines.join('\n');
}
