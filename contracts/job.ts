/**
 * The job contract: what travels on the queue from a bot adapter to a worker.
 * Jobs carry prompts and parameters, never images (SQS messages are capped at 1 MiB).
 */
import { randomBytes, randomInt } from 'node:crypto';
import { z } from 'zod';
import { ASPECT_RATIOS, ASPECT_SIZES, type AspectRatio, PROMPT_MAX_CHARS } from './limits.ts';

export { ASPECT_RATIOS, ASPECT_SIZES, type AspectRatio, PROMPT_MAX_CHARS };

/** Job ids are capabilities: 144 random bits, base64url. */
export const JOB_ID_PATTERN = /^[A-Za-z0-9_-]{22,64}$/;

/** A fresh, unguessable job id. */
export function newJobId(): string {
  return randomBytes(18).toString('base64url');
}

/** A random seed in the range every generator accepts. */
export function randomSeed(): number {
  return randomInt(0, 2 ** 32 - 1);
}

// Control characters (C0, DEL, C1) and bidi overrides that could disguise a prompt.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching them is the point
const FORBIDDEN_CHARS = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/u;

/** Normalise and check a prompt: whitespace runs (newlines, tabs) become one space. */
export const PromptSchema = z
  .string({ error: 'prompt must be a string' })
  .transform((s) => s.replace(/\s+/g, ' ').trim())
  .superRefine((s, ctx) => {
    if (s.length === 0) ctx.addIssue({ code: 'custom', message: 'prompt is empty' });
    const chars = [...s].length;
    if (chars > PROMPT_MAX_CHARS)
      ctx.addIssue({
        code: 'custom',
        message: `prompt is ${chars} characters; the limit is ${PROMPT_MAX_CHARS}`,
      });
    if (FORBIDDEN_CHARS.test(s))
      ctx.addIssue({ code: 'custom', message: 'prompt contains control characters' });
  });

const Dimension = z
  .number()
  .int()
  .min(64)
  .max(2048)
  .refine((n) => n % 16 === 0, 'must be a multiple of 16');

/** Generation parameters, fully resolved (the worker never guesses). */
export const JobParamsSchema = z.object({
  width: Dimension,
  height: Dimension,
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 32 - 1),
  steps: z.number().int().min(1).max(50),
  aspect: z.enum(ASPECT_RATIOS as [AspectRatio, ...AspectRatio[]]).optional(),
});
/** Resolved generation parameters. */
export type JobParams = z.infer<typeof JobParamsSchema>;

/** Where a job came from: used for limits, logs and replies. */
export const OriginSchema = z.object({
  platform: z.enum(['web', 'discord', 'slack']),
  userId: z.string().max(200).optional(),
  userName: z.string().max(200).optional(),
  scopeId: z.string().max(200).optional(),
  channelId: z.string().max(200).optional(),
});
/** Where a job came from. */
export type Origin = z.infer<typeof OriginSchema>;

/** The message body on the queue. */
export const JobSchema = z.object({
  v: z.literal(1),
  jobId: z.string().regex(JOB_ID_PATTERN),
  prompt: PromptSchema,
  params: JobParamsSchema,
  origin: OriginSchema,
  createdAt: z.number().int().positive(),
  expiresAt: z.number().int().positive(),
  /** Sealed reply target (see `seal.ts`): opaque to the worker, opened by the relay. */
  replyTarget: z.string().max(8192).optional(),
});
/** A job as it travels on the queue. */
export type Job = z.infer<typeof JobSchema>;

/** What a user asks for, before defaults are filled in. */
export const ImagineRequestSchema = z
  .object({
    prompt: PromptSchema,
    seed: z
      .number({ error: 'seed must be an integer from 0 to 4294967295' })
      .int('seed must be an integer from 0 to 4294967295')
      .min(0, 'seed must be an integer from 0 to 4294967295')
      .max(2 ** 32 - 1, 'seed must be an integer from 0 to 4294967295')
      .optional(),
    aspect: z
      .enum(ASPECT_RATIOS as [AspectRatio, ...AspectRatio[]], {
        error: `aspect must be one of ${ASPECT_RATIOS.join(', ')}`,
      })
      .optional(),
    width: Dimension.optional(),
    height: Dimension.optional(),
    steps: z.number().int().min(1).max(50).optional(),
  })
  .strict()
  .refine((r) => (r.width === undefined) === (r.height === undefined), {
    message: 'width and height go together',
  })
  .refine((r) => !(r.aspect && r.width), { message: 'give either aspect or width/height' });
/** A validated request from any front end. */
export type ImagineRequest = z.infer<typeof ImagineRequestSchema>;

/** Fill in the defaults of a request: size from aspect, a random seed, default steps. */
export function resolveParams(req: ImagineRequest, defaults: { steps: number }): JobParams {
  const aspect = req.aspect ?? (req.width ? undefined : '1:1');
  const size = aspect ? ASPECT_SIZES[aspect] : { width: req.width!, height: req.height! };
  return {
    width: size.width,
    height: size.height,
    seed: req.seed ?? randomSeed(),
    steps: req.steps ?? defaults.steps,
    ...(aspect ? { aspect } : {}),
  };
}

/** Turn zod issues into one readable sentence. */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((i) => {
      const path = i.path.join('.');
      return path && !i.message.startsWith(path) ? `${path}: ${i.message}` : i.message;
    })
    .join('; ');
}
