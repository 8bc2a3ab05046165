/**
 * Moderation settings: the limits a scope (Discord server, Slack workspace, the web page) runs
 * under, how per-scope and per-channel overrides combine with configured defaults, and the
 * names moderators use for them in commands.
 */

import type { Config } from '../contracts/config.ts';
import { ModelNameSchema, type Origin } from '../contracts/job.ts';
import { SAFETY_MODES, type SafetyMode, type SafetyPolicy } from '../contracts/safety.ts';

/** Every setting a moderator can change, per scope or per channel. */
export interface Limits {
  /** Images one user may request per window. */
  imagesPerUser: number;
  /** Images the whole scope may request per window. */
  imagesPerScope: number;
  /** Window length, seconds. */
  windowSeconds: number;
  /** Jobs one user may have queued or running at once. */
  concurrentPerUser: number;
  /** Refuse new requests while this many jobs are queued. */
  maxQueueLength: number;
  /** Largest width or height, pixels. */
  maxImageSide: number;
  /** Most images one request may make. */
  maxImagesPerJob: number;
  /** Most denoising steps one request may ask for. */
  maxSteps: number;
  /** Whether the built-in blocked words apply. */
  builtinBlockedWords: boolean;
  /** What happens to a generated image the safety classifier flags. */
  safety: SafetyMode;
  /** Score (0–1) at or above which an image is flagged; 0 flags every image. */
  safetyThreshold: number;
  /** Safety in age-restricted (NSFW) channels; `same` follows {@link Limits.safety}. */
  safetyAgeRestricted: SafetyMode | 'same';
  /** Where `review` holds flagged images for moderators (a channel id); '' = none. */
  reviewChannel: string;
  /** Models users may choose here, first = the default here; empty = every offered one. */
  models: string[];
}

/** A key of {@link Limits}. */
export type LimitKey = keyof Limits;

/** A change to a limit: a value, or `null` to fall back to the level above. */
export type LimitChanges = Partial<{ [K in LimitKey]: Limits[K] | null }>;

/** What a scope has stored: overrides only; absent means "use the default". */
export interface ScopeSettings {
  limits: Partial<Limits>;
  /** Per-channel overrides, keyed by channel id. */
  channels: Record<string, Partial<Limits>>;
  /** Words and patterns blocked in this scope (normalised, sorted). */
  blockedWords: string[];
  /** Channels where `/imagine` may be used; empty = all (minus denied). */
  allowedChannels: string[];
  /** Channels where `/imagine` is refused. */
  deniedChannels: string[];
}

/** One line of the audit log: who changed what, when. Never a prompt. */
export interface AuditEntry {
  at: number;
  actorId: string;
  actorName?: string;
  action: string;
}

/** An empty {@link ScopeSettings}. */
export function emptyScopeSettings(): ScopeSettings {
  return { limits: {}, channels: {}, blockedWords: [], allowedChannels: [], deniedChannels: [] };
}

/**
 * Freeze a settings read kept in memory by its store: one object is shared by every request
 * until the scope changes, so no reader may change it for the next.
 */
export function freezeSettings(settings: ScopeSettings): ScopeSettings {
  for (const overrides of Object.values(settings.channels)) Object.freeze(overrides);
  Object.freeze(settings.channels);
  Object.freeze(settings.limits);
  Object.freeze(settings.blockedWords);
  Object.freeze(settings.allowedChannels);
  Object.freeze(settings.deniedChannels);
  return Object.freeze(settings);
}

/** The defaults every scope starts from, read from configuration. */
export function defaultLimitsFromConfig(config: Readonly<Config>): Limits {
  return {
    imagesPerUser: config.LIMIT_IMAGES_PER_USER,
    imagesPerScope: config.LIMIT_IMAGES_PER_SCOPE,
    windowSeconds: config.LIMIT_WINDOW_SECONDS,
    concurrentPerUser: config.LIMIT_CONCURRENT_PER_USER,
    maxQueueLength: config.LIMIT_QUEUE_LENGTH,
    maxImageSide: config.LIMIT_IMAGE_SIDE,
    maxImagesPerJob: config.LIMIT_IMAGES_PER_JOB,
    maxSteps: config.LIMIT_STEPS,
    builtinBlockedWords: config.BLOCKED_WORDS_BUILTIN,
    safety: config.SAFETY,
    safetyThreshold: config.SAFETY_THRESHOLD,
    safetyAgeRestricted: config.SAFETY_AGE_RESTRICTED ?? 'same',
    reviewChannel: '',
    models: [],
  };
}

/** The defaults of the web page's scope: like every scope's, with `SAFETY_WEB` if set. */
export function webDefaultsFromConfig(config: Readonly<Config>): Partial<Limits> {
  return config.SAFETY_WEB === undefined ? {} : { safety: config.SAFETY_WEB };
}

/**
 * The safety policy a job runs under: the channel's mode (the age-restricted one in an NSFW
 * channel, when set), its threshold, and the review channel.
 */
export function safetyPolicyOf(limits: Limits, ageRestricted: boolean | undefined): SafetyPolicy {
  const mode =
    ageRestricted === true && limits.safetyAgeRestricted !== 'same'
      ? limits.safetyAgeRestricted
      : limits.safety;
  return {
    mode,
    threshold: limits.safetyThreshold,
    ...(limits.reviewChannel === '' ? {} : { reviewChannelId: limits.reviewChannel }),
  };
}

/** The scope key of an origin: `platform:scopeId` (the web page is `web:web`). */
export function scopeKeyOf(origin: Pick<Origin, 'platform' | 'scopeId'>): string {
  return `${origin.platform}:${origin.scopeId ?? 'default'}`;
}

/** The limits that apply: defaults, then the scope's overrides, then the channel's. */
export function effectiveLimits(
  defaults: Limits,
  settings: ScopeSettings,
  channelId: string | undefined,
): Limits {
  const channel = channelId === undefined ? undefined : settings.channels[channelId];
  return { ...defaults, ...settings.limits, ...(channel ?? {}) };
}

/** Whether a channel may use `/imagine` under these settings. */
export function channelAllowed(settings: ScopeSettings, channelId: string | undefined): boolean {
  if (channelId === undefined) return true;
  if (settings.deniedChannels.includes(channelId)) return false;
  return settings.allowedChannels.length === 0 || settings.allowedChannels.includes(channelId);
}

interface LimitField<K extends LimitKey> {
  key: K;
  /** What the command option is called (Discord option name, Slack `name=value`). */
  name: string;
  describe: string;
  parse(raw: string): Limits[K] | undefined;
  format(value: Limits[K]): string;
  /** Whether a stored value (JSON) is a valid value. */
  valid(value: unknown): boolean;
  min?: number;
  max?: number;
}

const DURATION = /^(\d+)\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hr|hrs|hours?|d|days?)?$/i;

/** Parse `90`, `90s`, `30m`, `1h`, `2d` into seconds. */
export function parseDurationSeconds(raw: string): number | undefined {
  const m = DURATION.exec(raw.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = (m[2] ?? 's').toLowerCase()[0];
  const factor = unit === 'd' ? 86_400 : unit === 'h' ? 3600 : unit === 'm' ? 60 : 1;
  return n * factor;
}

/**
 * A window's length as its exact parts, the way an admin's setting is echoed back: `45 s`,
 * `20 min`, `1 h 30 min`, `2 d`, and `59 min 59 s` for 3599 (never rounded to `60 min`). A wait
 * told to a user is worded by contracts/duration.ts instead.
 */
export function formatWindow(seconds: number): string {
  let left = Math.max(0, Math.round(seconds));
  const parts: string[] = [];
  for (const [unit, size] of WINDOW_UNITS) {
    const n = Math.floor(left / size);
    left -= n * size;
    if (n > 0) parts.push(`${n} ${unit}`);
  }
  return parts.length > 0 ? parts.join(' ') : '0 s';
}

const WINDOW_UNITS = [
  ['d', 86_400],
  ['h', 3600],
  ['min', 60],
  ['s', 1],
] as const;

function intField<K extends LimitKey>(
  key: K,
  name: string,
  describe: string,
  min: number,
  max: number,
): LimitField<K> {
  return {
    key,
    name,
    describe,
    min,
    max,
    parse: (raw) => {
      const n = Number(raw.trim());
      return (Number.isInteger(n) && n >= min && n <= max ? n : undefined) as Limits[K] | undefined;
    },
    format: (v) => String(v),
    valid: (v) => typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max,
  };
}

function modeField<K extends 'safety' | 'safetyAgeRestricted'>(
  key: K,
  name: string,
  describe: string,
  extra: readonly string[],
): LimitField<K> {
  const values: readonly string[] = [...SAFETY_MODES, ...extra];
  return {
    key,
    name,
    describe,
    parse: (raw) => {
      const v = raw.trim().toLowerCase();
      return (values.includes(v) ? v : undefined) as Limits[K] | undefined;
    },
    format: (v) => String(v),
    valid: (v) => typeof v === 'string' && values.includes(v),
  };
}

const isModelName = (m: unknown) => ModelNameSchema.safeParse(m).success;
/** Most models one scope may list. */
export const MODELS_MAX = 25;

const CHANNEL_ID = /^<#([A-Za-z0-9]{1,40})(?:\|[^>]*)?>$|^([A-Z][A-Z0-9]{5,40}|\d{5,25})$/;

/** The settings moderators can change, by the name they use in commands. */
export const LIMIT_FIELDS = [
  intField('imagesPerUser', 'per_user', 'images per user per window', 0, 1_000_000),
  intField('imagesPerScope', 'per_server', 'images per server/workspace per window', 0, 10_000_000),
  {
    key: 'windowSeconds',
    name: 'window',
    describe: 'window length (e.g. 1h, 30m, 1d)',
    min: 10,
    max: 7 * 86_400,
    parse: (raw: string) => {
      const s = parseDurationSeconds(raw);
      return s !== undefined && s >= 10 && s <= 7 * 86_400 ? s : undefined;
    },
    format: (v: number) => formatWindow(v),
    valid: (v: unknown) =>
      typeof v === 'number' && Number.isInteger(v) && v >= 10 && v <= 7 * 86_400,
  } satisfies LimitField<'windowSeconds'>,
  intField('concurrentPerUser', 'concurrent', 'jobs per user at once', 1, 1000),
  intField('maxQueueLength', 'max_queue', 'refuse beyond this many queued jobs', 1, 1_000_000),
  intField('maxImageSide', 'max_side', 'largest width or height in pixels', 64, 2048),
  intField('maxImagesPerJob', 'max_images', 'most images one /imagine makes', 1, 4),
  intField('maxSteps', 'max_steps', 'most denoising steps one request asks for', 1, 50),
  {
    key: 'builtinBlockedWords',
    name: 'builtin_words',
    describe: 'built-in blocked words on/off',
    parse: (raw: string) => {
      const v = raw.trim().toLowerCase();
      if (['on', 'true', 'yes', '1'].includes(v)) return true;
      if (['off', 'false', 'no', '0'].includes(v)) return false;
      return undefined;
    },
    format: (v: boolean) => (v ? 'on' : 'off'),
    valid: (v: unknown) => typeof v === 'boolean',
  } satisfies LimitField<'builtinBlockedWords'>,
  modeField(
    'safety',
    'safety',
    'flagged images: off, spoiler, review (moderators approve) or block',
    [],
  ),
  {
    key: 'safetyThreshold',
    name: 'safety_threshold',
    describe: 'classifier score (0–1) from which an image is flagged; 0 flags all',
    min: 0,
    max: 1,
    parse: (raw: string) => {
      const text = raw.trim();
      const n = text.endsWith('%') ? Number(text.slice(0, -1)) / 100 : Number(text);
      return text !== '' && Number.isFinite(n) && n >= 0 && n <= 1 ? n : undefined;
    },
    format: (v: number) => String(Number(v.toFixed(3))),
    valid: (v: unknown) => typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= 1,
  } satisfies LimitField<'safetyThreshold'>,
  modeField(
    'safetyAgeRestricted',
    'nsfw_safety',
    'safety in age-restricted (NSFW) channels; same = as safety',
    ['same'],
  ),
  {
    key: 'reviewChannel',
    name: 'review_channel',
    describe: 'channel where review holds flagged images for moderators (none = review blocks)',
    parse: (raw: string) => {
      const v = raw.trim();
      if (v.toLowerCase() === 'none') return '';
      const m = CHANNEL_ID.exec(v);
      return m ? (m[1] ?? m[2]) : undefined;
    },
    format: (v: string) => (v === '' ? 'none' : `<#${v}>`),
    valid: (v: unknown) => typeof v === 'string' && (v === '' || CHANNEL_ID.test(v)),
  } satisfies LimitField<'reviewChannel'>,
  {
    key: 'models',
    name: 'models',
    describe:
      'models users may choose, comma-separated, the first is the default (all = every one offered)',
    parse: (raw: string) => {
      const text = raw.trim();
      if (text.toLowerCase() === 'all') return [];
      const names = [
        ...new Set(
          text
            .split(',')
            .map((m) => m.trim())
            .filter(Boolean),
        ),
      ];
      return names.length > 0 && names.length <= MODELS_MAX && names.every(isModelName)
        ? names
        : undefined;
    },
    format: (v: string[]) => (v.length === 0 ? 'all' : v.join(',')),
    valid: (v: unknown) => Array.isArray(v) && v.length <= MODELS_MAX && v.every(isModelName),
  } satisfies LimitField<'models'>,
] as const;

/**
 * The models users may choose under these limits: the offered ones (`MODELS`) the scope allows,
 * in the scope's order (its first is its default); every offered one when it restricts nothing.
 */
export function allowedModels(
  offered: readonly string[],
  limits: Pick<Limits, 'models'>,
): string[] {
  if (limits.models.length === 0) return [...offered];
  return limits.models.filter((m) => offered.includes(m));
}

/** The field a command name refers to. */
export function limitFieldByName(name: string): (typeof LIMIT_FIELDS)[number] | undefined {
  const n = name.trim().toLowerCase().replace(/-/g, '_');
  const alias = n === 'per_workspace' || n === 'per_scope' ? 'per_server' : n;
  return LIMIT_FIELDS.find((f) => f.name === alias || f.key.toLowerCase() === alias);
}

/** Format one limit value for people. */
export function formatLimit<K extends LimitKey>(key: K, value: Limits[K]): string {
  const field = LIMIT_FIELDS.find((f) => f.key === key) as LimitField<K> | undefined;
  return field ? field.format(value) : String(value);
}

/** The command name of a limit key. */
export function limitName(key: LimitKey): string {
  return LIMIT_FIELDS.find((f) => f.key === key)?.name ?? key;
}

/** Whether a stored value is a valid value for its key (stores hold JSON). */
export function isValidLimit(key: string, value: unknown): value is Limits[LimitKey] {
  const field = LIMIT_FIELDS.find((f) => f.key === key);
  return field?.valid(value) === true;
}
