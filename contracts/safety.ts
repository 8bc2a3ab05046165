/**
 * Output safety, the contract: the policy a job carries from its scope's settings to the worker,
 * and the verdict the worker pushes with each image so the relay and chat delivery act on it.
 */
import { z } from 'zod';

/** What a scope does with an image the classifier flags. */
export const SAFETY_MODES = ['off', 'spoiler', 'review', 'block'] as const;
/** A safety mode. */
export type SafetyMode = (typeof SAFETY_MODES)[number];

/** What happens to one image. */
export const SAFETY_ACTIONS = ['deliver', 'spoiler', 'review', 'block'] as const;
/** A safety action. */
export type SafetyAction = (typeof SAFETY_ACTIONS)[number];

/** The classifier models bundled in `nsfwjs`, by the name configuration uses. */
export const SAFETY_MODELS = ['mobilenet_v2', 'mobilenet_v2_mid', 'inception_v3'] as const;
/** A bundled model. */
export type SafetyModel = (typeof SAFETY_MODELS)[number];

/** The tfjs backends that install from npm and run on the CPU. */
export const SAFETY_BACKENDS = ['wasm', 'cpu'] as const;
/** A tfjs backend. */
export type SafetyBackend = (typeof SAFETY_BACKENDS)[number];

/** The default `SAFETY_THRESHOLD`: demo images score at most ~0.14 with MobileNetV2. */
export const DEFAULT_SAFETY_THRESHOLD = 0.6;

/** The policy resolved at submission (scope, channel, age-restricted channel) and queued. */
export const SafetyPolicySchema = z.object({
  mode: z.enum(SAFETY_MODES),
  /** An image whose score is at or above this is flagged (0 flags everything). */
  threshold: z.number().min(0).max(1),
  /** Where `review` holds images (a channel of the same scope); absent: review blocks. */
  reviewChannelId: z.string().max(100).optional(),
});
/** A job's safety policy. */
export type SafetyPolicy = z.infer<typeof SafetyPolicySchema>;

/** What was decided about one image, pushed beside it. */
export const SafetyVerdictSchema = z.object({
  action: z.enum(SAFETY_ACTIONS),
  mode: z.enum(SAFETY_MODES),
  threshold: z.number().min(0).max(1),
  /** The score judged: the larger of the classifier's and the generator's own. */
  score: z.number().min(0).max(1).optional(),
  /** The classifier's score, and what it is (`nsfwjs/mobilenet_v2@wasm`). */
  classifierScore: z.number().min(0).max(1).optional(),
  classifier: z.string().max(100).optional(),
  /** The generator's own score, when it returned one. */
  generatorScore: z.number().min(0).max(1).optional(),
  reviewChannelId: z.string().max(100).optional(),
});
/** A pushed safety verdict. */
export type SafetyVerdict = z.infer<typeof SafetyVerdictSchema>;

/**
 * Decide one image: under the threshold (or with safety off) it is delivered; over it, the mode
 * says what happens. A `review` with no review channel to hold it in blocks instead: the image
 * must not reach the channel unseen.
 */
export function decideSafety(policy: SafetyPolicy, score: number | undefined): SafetyAction {
  if (policy.mode === 'off' || score === undefined) return 'deliver';
  if (score < policy.threshold) return 'deliver';
  if (policy.mode === 'review' && policy.reviewChannelId === undefined) return 'block';
  return policy.mode;
}

/** Combine the classifier's score with a generator's own: the larger wins. */
export function combineScores(...scores: Array<number | undefined>): number | undefined {
  const known = scores.filter((s): s is number => s !== undefined && Number.isFinite(s));
  return known.length === 0 ? undefined : Math.min(1, Math.max(0, ...known));
}

/** What a push says about safety: one verdict per image the generator made, and whose job it was. */
export const PushSafetySchema = z.object({
  /** One verdict per image made, in order; `index` is the image's place in the job. */
  verdicts: z
    .array(SafetyVerdictSchema.extend({ index: z.number().int().min(0).max(3) }))
    .min(1)
    .max(4),
  /** For the audit log: the job's platform, scope and user (never the image). */
  platform: z.enum(['web', 'discord', 'slack']).optional(),
  scopeId: z.string().max(200).optional(),
  userId: z.string().max(200).optional(),
});
/** What a push says about safety. */
export type PushSafety = z.infer<typeof PushSafetySchema>;

/** Whether an image with this action leaves the worker (blocked ones never do). */
export function isPushed(action: SafetyAction): boolean {
  return action !== 'block';
}

/** How many of a job's images output safety kept from the user, and of how many made. */
export interface WithheldCount {
  blocked: number;
  /** Held for a moderator. */
  held: number;
  of: number;
}

/** The count of a job's blocked and held images; undefined when none was. */
export function withheldOf(
  verdicts: ReadonlyArray<{ action: SafetyAction }>,
): WithheldCount | undefined {
  const blocked = verdicts.filter((v) => v.action === 'block').length;
  const held = verdicts.filter((v) => v.action === 'review').length;
  return blocked + held === 0 ? undefined : { blocked, held, of: verdicts.length };
}

/** What a user reads beside the images delivered: how many were withheld, and how. */
export function withheldLine(count: WithheldCount, noun: string): string {
  const n = count.blocked + count.held;
  const how = [
    ...(count.blocked > 0 ? [`${count.blocked} blocked`] : []),
    ...(count.held > 0 ? [`${count.held} held for a moderator`] : []),
  ].join(', ');
  return `${n} of ${count.of} images ${n === 1 ? 'was' : 'were'} withheld by this ${noun}'s safety setting (${how}).`;
}

/** Whether an image with this action goes to the user as it is (held ones wait for review). */
export function isDelivered(action: SafetyAction): boolean {
  return action === 'deliver' || action === 'spoiler';
}
