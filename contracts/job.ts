/**
 * The job contract: what travels on the queue from a bot adapter to a worker.
 * Jobs carry prompts and parameters, never images (SQS messages are capped at 1 MiB).
 */
import { randomFillSync, randomInt } from 'node:crypto';
import { z } from 'zod';
import {
  ASPECT_RATIOS,
  ASPECT_SIZES,
  type AspectRatio,
  IMAGE_COUNT_DEFAULT,
  IMAGE_COUNT_MAX,
  IMAGE_MAX_SIDE,
  imageSeed,
  imageSeeds,
  JOB_TASKS,
  type JobTask,
  PROMPT_MAX_CHARS,
  UPSCALE_MAX_SIDE,
  UPSCALE_STRENGTH,
  upscaleSize,
  VARY_DEFAULT,
  VARY_STRENGTHS,
  type VaryPreset,
  varySize,
} from './limits.ts';
import { SafetyPolicySchema } from './safety.ts';

/** The limits are part of the job contract: front ends import them from here. */
export * from './limits.ts';

/** Job ids are capabilities: 144 random bits, base64url. */
export const JOB_ID_PATTERN = /^[A-Za-z0-9_-]{22,64}$/;

/**
 * CSPRNG bytes drawn 4 KiB at a time and handed out once each (as Node's own `randomUUID` and
 * `randomInt` cache theirs): one `randomBytes` call per job id was a native call and a Buffer
 * each, ~2% of an enqueue's CPU.
 */
const idBytes = Buffer.allocUnsafeSlow(4096);
let idBytesAt = idBytes.length;

/** A fresh, unguessable job id. */
export function newJobId(): string {
  if (idBytesAt + 18 > idBytes.length) {
    randomFillSync(idBytes);
    idBytesAt = 0;
  }
  const bytes = idBytes.subarray(idBytesAt, idBytesAt + 18);
  idBytesAt += 18;
  return bytes.toString('base64url');
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
  .max(IMAGE_MAX_SIDE)
  .refine((n) => n % 16 === 0, 'must be a multiple of 16');

/** An output side on the queue: up to {@link UPSCALE_MAX_SIDE} (only an upscale goes past 2048). */
const OutputDimension = z
  .number()
  .int()
  .min(64)
  .max(UPSCALE_MAX_SIDE)
  .refine((n) => n % 16 === 0, 'must be a multiple of 16');

const SEED_MESSAGE = 'seed must be an integer from 0 to 4294967295';
const Seed = z
  .number({ error: SEED_MESSAGE })
  .int(SEED_MESSAGE)
  .min(0, SEED_MESSAGE)
  .max(2 ** 32 - 1, SEED_MESSAGE);

/**
 * Generation parameters, fully resolved (the worker never guesses). `width`×`height` is the size
 * of every output image; `seed` is the base seed: image i is made with
 * {@link imageSeed}`(seed, i)` = `(seed + i) mod 2^32`, so any one image can be made again
 * alone (a job of count 1 with that seed).
 */
export const JobParamsSchema = z.object({
  width: OutputDimension,
  height: OutputDimension,
  seed: Seed,
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
  /** The channel is marked age-restricted (Discord NSFW). */
  ageRestricted: z.boolean().optional(),
});
/** Where a job came from. */
export type Origin = z.infer<typeof OriginSchema>;

/** Longest input image URL accepted. */
export const INPUT_URL_MAX_CHARS = 2048;

/**
 * An http(s) URL without credentials. Which hosts are allowed is configuration
 * (`INPUT_IMAGE_HOSTS` and the relay itself): the submit path and the worker's fetcher check it.
 */
const InputUrlSchema = z
  .string({ error: 'input.image.url must be a string' })
  .max(INPUT_URL_MAX_CHARS, `input.image.url is over ${INPUT_URL_MAX_CHARS} characters`)
  .superRefine((s, ctx) => {
    let url: URL;
    try {
      url = new URL(s);
    } catch {
      ctx.addIssue({ code: 'custom', message: 'input.image.url is not a URL' });
      return;
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:')
      ctx.addIssue({ code: 'custom', message: 'input.image.url must be https' });
    if (url.username || url.password)
      ctx.addIssue({ code: 'custom', message: 'input.image.url must not carry credentials' });
  });

/**
 * Where an input image lives. Jobs carry a reference, never bytes; the worker fetches it at job
 * time.
 * - `url`: a URL on an allow-listed host: a Discord CDN attachment (`cdn.discordapp.com`,
 *   `media.discordapp.net`), or the relay's own short-lived signed URL (`/inputs/<token>`) to a
 *   web upload or a result still in its buffer.
 * - `slack-file`: a file in Slack, resolved by the worker with `files.info` → `url_private` and
 *   the bot token (`SLACK_BOT_TOKEN`).
 */
export const ImageRefSchema = z.discriminatedUnion(
  'kind',
  [
    z.object({ kind: z.literal('url'), url: InputUrlSchema }).strict(),
    z
      .object({
        kind: z.literal('slack-file'),
        fileId: z
          .string({ error: 'input.image.fileId must be a Slack file id like F0123ABCD' })
          .regex(/^F[A-Z0-9]{2,40}$/, 'input.image.fileId must be a Slack file id like F0123ABCD'),
      })
      .strict(),
  ],
  { error: 'input.image must be {"kind":"url","url":…} or {"kind":"slack-file","fileId":…}' },
);
/** Where an input image lives. */
export type ImageRef = z.infer<typeof ImageRefSchema>;

const SourceSide = z
  .number({ error: 'input.width and input.height must be whole pixels from 1 to 8192' })
  .int('input.width and input.height must be whole pixels from 1 to 8192')
  .min(1, 'input.width and input.height must be whole pixels from 1 to 8192')
  .max(8192, 'input.width and input.height must be whole pixels from 1 to 8192');

/**
 * The input image of a vary or upscale: where it is, and what is known of it. When it is a
 * result of ours, `jobId`, `index` (which image of that job, 0-based: U2 is index 1) and its
 * `seed` say which; `width`/`height` are its size (needed for an upscale).
 */
export const JobInputSchema = z
  .object({
    image: ImageRefSchema,
    jobId: z
      .string({ error: 'input.jobId must be a job id' })
      .regex(JOB_ID_PATTERN, 'input.jobId must be a job id')
      .optional(),
    index: z
      .number({ error: `input.index must be an integer from 0 to ${IMAGE_COUNT_MAX - 1}` })
      .int(`input.index must be an integer from 0 to ${IMAGE_COUNT_MAX - 1}`)
      .min(0, `input.index must be an integer from 0 to ${IMAGE_COUNT_MAX - 1}`)
      .max(IMAGE_COUNT_MAX - 1, `input.index must be an integer from 0 to ${IMAGE_COUNT_MAX - 1}`)
      .optional(),
    seed: Seed.optional(),
    width: SourceSide.optional(),
    height: SourceSide.optional(),
  })
  .strict();
/** The input image of a vary or upscale. */
export type JobInput = z.infer<typeof JobInputSchema>;

const MODEL_MESSAGE =
  'model must be a model name of 1-100 letters, digits, spaces and . _ - : / + (one the server offers)';
/**
 * A model a user chose among those the server offers (`MODELS`); the worker routes the job to a
 * backend offering it and passes it on (an A1111 checkpoint, ComfyUI's `{{model}}`, a Replicate
 * model). Which names are offered is configuration, checked on the submit path.
 */
export const ModelNameSchema = z
  .string({ error: MODEL_MESSAGE })
  .regex(/^[A-Za-z0-9][A-Za-z0-9 ._:/+-]{0,99}$/, MODEL_MESSAGE);

const COUNT_MESSAGE = `count must be an integer from 1 to ${IMAGE_COUNT_MAX}`;
const Count = z
  .number({ error: COUNT_MESSAGE })
  .int(COUNT_MESSAGE)
  .min(1, COUNT_MESSAGE)
  .max(IMAGE_COUNT_MAX, COUNT_MESSAGE);

/** Image-to-image strength on the queue: 0 < strength ≤ 1. */
const Strength = z.number().gt(0).max(1);

/**
 * The message body on the queue. `task` and `count` default to `generate` and 1 so jobs queued
 * before the creative loop (single image, no task) stay valid.
 */
export const JobSchema = z
  .object({
    v: z.literal(1),
    jobId: z.string().regex(JOB_ID_PATTERN),
    task: z.enum(JOB_TASKS).default('generate'),
    /** Images to make; image i has seed `imageSeed(params.seed, i)`. */
    count: Count.default(1),
    prompt: PromptSchema,
    params: JobParamsSchema,
    /** The input image of a vary or upscale. */
    input: JobInputSchema.optional(),
    /** Image-to-image strength of a vary or upscale (resolved: the worker never guesses). */
    strength: Strength.optional(),
    origin: OriginSchema,
    createdAt: z.number().int().positive(),
    expiresAt: z.number().int().positive(),
    /** Sealed reply target (see `seal.ts`): opaque to the worker, opened by the relay. */
    replyTarget: z.string().max(8192).optional(),
    /** Output safety for this job's images, resolved from its scope and channel at submission. */
    safety: SafetyPolicySchema.optional(),
    /** The model chosen, when the server offers a choice. */
    model: ModelNameSchema.optional(),
  })
  .superRefine((job, ctx) => {
    for (const issue of taskIssues(job)) ctx.addIssue({ code: 'custom', message: issue });
    if (
      job.task !== 'upscale' &&
      (job.params.width > IMAGE_MAX_SIDE || job.params.height > IMAGE_MAX_SIDE)
    )
      ctx.addIssue({
        code: 'custom',
        message: `only an upscale makes images over ${IMAGE_MAX_SIDE} pixels a side`,
      });
  });
/** A job as it travels on the queue (`task` and `count` filled in). */
export type Job = z.output<typeof JobSchema>;

/** What is wrong with a job's combination of task, input, count and strength. */
function taskIssues(job: {
  task: JobTask;
  count: number;
  input?: JobInput | undefined;
  strength?: number | undefined;
}): string[] {
  const issues: string[] = [];
  if (job.task === 'generate') {
    if (job.input) issues.push('a generate job takes no input image');
    if (job.strength !== undefined) issues.push('a generate job takes no strength');
  } else {
    if (!job.input) issues.push(`a ${job.task} job needs an input image`);
    if (job.strength === undefined) issues.push(`a ${job.task} job needs a strength`);
  }
  if (job.task === 'upscale' && job.count !== 1) issues.push('an upscale makes one image');
  return issues;
}

/** The seeds of a job's images, in order. */
export function jobSeeds(job: Pick<Job, 'params' | 'count'>): number[] {
  return imageSeeds(job.params.seed, job.count);
}

const STRENGTH_MESSAGE = 'strength must be "subtle", "strong" or a number above 0 and at most 1';

/**
 * What a user asks for, before defaults are filled in.
 * - `task`: `generate` (default without `input`), `vary` (default with `input`: image-to-image
 *   from it, guided by the prompt) or `upscale` (2× the input's size, detail added).
 * - `count`: images to make, 1–4 (default: the server/channel setting, else 4; an upscale
 *   makes 1).
 * - `input`: the input image reference (see {@link JobInputSchema}); an upscale needs its
 *   `width` and `height`.
 * - `strength`: a vary's strength, `"subtle"`, `"strong"` (default) or a number in (0, 1].
 * - `seed`: the base seed; image i gets `(seed + i) mod 2^32`.
 */
export const ImagineRequestSchema = z
  .object({
    prompt: PromptSchema,
    task: z.enum(JOB_TASKS, { error: `task must be one of ${JOB_TASKS.join(', ')}` }).optional(),
    count: Count.optional(),
    model: ModelNameSchema.optional(),
    input: JobInputSchema.optional(),
    strength: z
      .union(
        [
          z.enum(Object.keys(VARY_STRENGTHS) as [VaryPreset, ...VaryPreset[]]),
          z.number().gt(0).max(1),
        ],
        { error: STRENGTH_MESSAGE },
      )
      .optional(),
    seed: Seed.optional(),
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
  .refine((r) => !(r.aspect && r.width), { message: 'give either aspect or width/height' })
  .superRefine((r, ctx) => {
    const task = r.task ?? (r.input ? 'vary' : 'generate');
    const add = (message: string) => ctx.addIssue({ code: 'custom', message });
    if (task === 'generate' && r.input)
      add('an input image makes an image-to-image job: use task "vary" (or leave task out)');
    if (task !== 'generate' && !r.input) add(`task "${task}" needs an input image`);
    if (r.strength !== undefined && task !== 'vary') add('strength applies to a vary only');
    if (task === 'upscale') {
      if (r.count !== undefined && r.count !== 1)
        add('an upscale makes one image; leave count out');
      if (r.aspect || r.width)
        add("an upscale's size is twice its input's; leave aspect and size out");
      if (r.input && (r.input.width === undefined || r.input.height === undefined))
        add("an upscale needs its input's input.width and input.height");
      else if (r.input?.width && r.input.height && !upscaleSize(r.input.width, r.input.height))
        add(
          `the input is ${r.input.width}×${r.input.height}; twice that is over the ` +
            `${UPSCALE_MAX_SIDE}-pixel limit, so it cannot be upscaled further`,
        );
    }
  });
/** A validated request from any front end. */
export type ImagineRequest = z.infer<typeof ImagineRequestSchema>;

/** A request with every default filled in: the job's task, count, parameters and input. */
export interface ResolvedRequest {
  task: JobTask;
  count: number;
  params: JobParams;
  input?: JobInput;
  strength?: number;
}

/**
 * Fill in the defaults of a request: the task (vary when there is an input image), the count
 * (an upscale makes 1; else the request's, the server/channel default, or 4), the size (an
 * upscale doubles its input; a vary keeps its input's aspect; else from aspect, 1:1 by
 * default), a random base seed, default steps and the strength.
 */
export function resolveRequest(
  req: ImagineRequest,
  defaults: { steps: number; count?: number | undefined },
): ResolvedRequest {
  const task: JobTask = req.task ?? (req.input ? 'vary' : 'generate');
  const count = task === 'upscale' ? 1 : (req.count ?? defaults.count ?? IMAGE_COUNT_DEFAULT);
  let size: { width: number; height: number };
  let aspect: AspectRatio | undefined;
  const source =
    req.input?.width && req.input.height
      ? { width: req.input.width, height: req.input.height }
      : undefined;
  if (task === 'upscale') {
    size = upscaleSize(source!.width, source!.height)!;
  } else if (task === 'vary' && source && !req.aspect && !req.width) {
    size = varySize(source.width, source.height);
  } else {
    aspect = req.aspect ?? (req.width ? undefined : '1:1');
    size = aspect ? ASPECT_SIZES[aspect] : { width: req.width!, height: req.height! };
  }
  const strength =
    task === 'upscale'
      ? UPSCALE_STRENGTH
      : task === 'vary'
        ? typeof req.strength === 'number'
          ? req.strength
          : VARY_STRENGTHS[req.strength ?? VARY_DEFAULT]
        : undefined;
  return {
    task,
    count,
    params: {
      width: size.width,
      height: size.height,
      seed: req.seed ?? (task === 'upscale' ? req.input?.seed : undefined) ?? randomSeed(),
      steps: req.steps ?? defaults.steps,
      ...(aspect ? { aspect } : {}),
    },
    ...(req.input ? { input: req.input } : {}),
    ...(strength !== undefined ? { strength } : {}),
  };
}

/** Fill in the defaults of a request's parameters (see {@link resolveRequest}). */
export function resolveParams(req: ImagineRequest, defaults: { steps: number }): JobParams {
  return resolveRequest(req, defaults).params;
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
