/**
 * Several generator backends at once: the `GENERATORS` list (what each backend is, where it is,
 * what it can do, how it ranks) and the health each reports on `/healthz`. Parsed by the one
 * configuration schema; read by the worker's router and shown by the relay.
 */
import { z } from 'zod';
import { UPSCALE_MAX_SIDE } from './limits.ts';

/** What a backend can be asked to do. */
export const BACKEND_TASKS = ['generate', 'vary', 'upscale'] as const;
/** One of {@link BACKEND_TASKS}. */
export type BackendTask = (typeof BACKEND_TASKS)[number];

/** Backend kinds (each one adapter in worker/generators/). */
export const BACKEND_TYPES = ['demo', 'http', 'modal', 'a1111', 'comfyui', 'replicate'] as const;
/** One of {@link BACKEND_TYPES}. */
export type BackendType = (typeof BACKEND_TYPES)[number];

const name = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$/, 'must be 1-40 letters, digits, `_`, `.` or `-`');

/**
 * One backend of the list. Adapter settings left out fall back to that adapter's own variables
 * (`A1111_AUTH`, `COMFYUI_WORKFLOW`, `REPLICATE_API_TOKEN`, ...), so secrets can stay in them.
 */
export const BackendSpecSchema = z
  .object({
    name,
    type: z.enum(BACKEND_TYPES),
    url: z.url({ error: 'must be an absolute http(s) URL' }).optional(),
    /** Lower goes first; a backend is tried only when every lower one failed or cannot do it. */
    priority: z.number().int().min(0).max(1000).default(1),
    /** Share of the jobs among backends of the same priority. */
    weight: z.number().positive().max(1000).default(1),
    tasks: z.array(z.enum(BACKEND_TASKS)).min(1).optional(),
    maxSide: z.number().int().min(64).max(8192).default(2048),
    maxCount: z.number().int().min(1).max(16).default(4),
    /** Models users may choose on this backend (the first is its default). */
    models: z.array(z.string().min(1).max(200)).max(50).optional(),
    // Adapter settings (see each adapter's variables).
    auth: z.string().min(1).optional(),
    token: z.string().min(1).optional(),
    model: z.string().min(1).optional(),
    sampler: z.string().min(1).optional(),
    scheduler: z.string().min(1).optional(),
    cfgScale: z.number().min(1).max(30).optional(),
    upscaler: z.string().min(1).optional(),
    workflow: z.string().min(1).optional(),
    varyWorkflow: z.string().min(1).optional(),
    upscaleWorkflow: z.string().min(1).optional(),
    varyModel: z.string().min(1).optional(),
    upscaleModel: z.string().min(1).optional(),
  })
  .strict();
/** One configured backend. */
export type BackendSpec = z.output<typeof BackendSpecSchema>;

/** `GENERATORS`: a JSON array of backends with unique names. */
export const BackendListSchema = z
  .array(BackendSpecSchema)
  .min(1, 'must list at least one backend')
  .max(32)
  .superRefine((list, ctx) => {
    const seen = new Set<string>();
    for (const [i, b] of list.entries()) {
      if (seen.has(b.name))
        ctx.addIssue({
          code: 'custom',
          path: [i, 'name'],
          message: `name ${b.name} is used twice`,
        });
      seen.add(b.name);
    }
  });

/**
 * Largest side of any image the Flux app on Modal makes (`MAX_SIDE` in
 * worker/modal/flux_core.py), an upscale's included: its img2img is not tiled, so an upscale
 * of an image over 1024 a side is refused there.
 */
export const MODAL_FLUX_MAX_SIDE = 2048;

/**
 * What a backend type does when its `GENERATORS` entry lists no `tasks`: Replicate upscales
 * only with an upscale model; an `http` endpoint may be one written before the creative loop.
 */
export function defaultBackendTasks(type: BackendType, hasUpscaleModel: boolean): BackendTask[] {
  switch (type) {
    case 'a1111':
    case 'comfyui':
    case 'modal':
      return ['generate', 'vary', 'upscale'];
    case 'replicate':
      return hasUpscaleModel ? ['generate', 'vary', 'upscale'] : ['generate', 'vary'];
    default:
      return ['generate'];
  }
}

/** What a job needs of a backend. */
export interface BackendDemand {
  task: BackendTask;
  count: number;
  width: number;
  height: number;
  model?: string | undefined;
}

/** What one backend can be asked for, health aside: how the router and the front door read a spec. */
export interface BackendCapability {
  tasks: readonly BackendTask[];
  maxSide: number;
  maxCount: number;
  /** Models offered there; a job naming another model skips this backend. */
  models?: readonly string[] | undefined;
}

/** Whether a backend can serve a demand at all (health aside). */
export function canServe(b: BackendCapability, d: BackendDemand): boolean {
  return (
    b.tasks.includes(d.task) &&
    d.count <= b.maxCount &&
    Math.max(d.width, d.height) <= b.maxSide &&
    (d.model === undefined || (b.models ?? []).includes(d.model))
  );
}

/** One `GENERATORS` entry's capability, its tasks defaulted by type as the router does. */
export function backendCapability(
  spec: BackendSpec,
  settings: Pick<GeneratorSettings, 'REPLICATE_UPSCALE_MODEL'>,
): BackendCapability {
  return {
    tasks:
      spec.tasks ??
      defaultBackendTasks(
        spec.type,
        Boolean(spec.upscaleModel || settings.REPLICATE_UPSCALE_MODEL),
      ),
    maxSide: spec.maxSide,
    maxCount: spec.maxCount,
    models: spec.models ?? (spec.model ? [spec.model] : undefined),
  };
}

/**
 * Why no backend of `backends` can serve `d` (a sentence for the user), or undefined when one
 * can: so a job no backend would take is refused before it is queued, not failed after.
 */
export function demandRefusal(
  backends: readonly BackendCapability[],
  d: BackendDemand,
): string | undefined {
  if (backends.some((b) => canServe(b, d))) return undefined;
  const what = `a ${d.width}×${d.height} ${d.task}${d.count > 1 ? ` of ${d.count} images` : ''}`;
  const doing = backends.filter((b) => b.tasks.includes(d.task));
  if (doing.length === 0) return `this server's image generators do not ${d.task}`;
  const offering =
    d.model === undefined ? doing : doing.filter((b) => (b.models ?? []).includes(d.model!));
  if (offering.length === 0)
    return `this server's image generators offer no model ${d.model} for ${what}`;
  const maxSide = Math.max(...offering.map((b) => b.maxSide));
  const maxCount = Math.max(...offering.map((b) => b.maxCount));
  const side = Math.max(d.width, d.height);
  if (side > maxSide)
    return `this server's image generators make at most ${maxSide} pixels a side; ${what} is too big`;
  if (d.count > maxCount)
    return `this server's image generators make at most ${maxCount} image${maxCount > 1 ? 's' : ''} at once; ask for fewer`;
  return `no one image generator here makes ${what}; ask for fewer or smaller images`;
}

/** The generator settings of a deployment (the configuration's) an upscale limit comes from. */
export interface GeneratorSettings {
  GENERATOR: BackendType;
  GENERATORS?: readonly BackendSpec[] | undefined;
  REPLICATE_UPSCALE_MODEL?: string | undefined;
}

/**
 * The largest side an upscale may make on this deployment, so front ends offer and queue only
 * upscales a generator will run: one `GENERATOR`'s own limit (the Flux app on Modal:
 * {@link MODAL_FLUX_MAX_SIDE}; Replicate without an upscale model: none), or the best `maxSide`
 * among the `GENERATORS` that upscale (as the router picks). Never over
 * {@link UPSCALE_MAX_SIDE}; 0 when nothing upscales.
 */
export function upscaleMaxSide(settings: GeneratorSettings): number {
  const hasUpscaleModel = (spec?: BackendSpec) =>
    Boolean(spec?.upscaleModel || settings.REPLICATE_UPSCALE_MODEL);
  if (settings.GENERATORS) {
    let best = 0;
    for (const spec of settings.GENERATORS) {
      const { tasks, maxSide } = backendCapability(spec, settings);
      if (tasks.includes('upscale')) best = Math.max(best, maxSide);
    }
    return Math.min(best, UPSCALE_MAX_SIDE);
  }
  switch (settings.GENERATOR) {
    case 'modal':
      return MODAL_FLUX_MAX_SIDE;
    case 'replicate':
      return hasUpscaleModel() ? UPSCALE_MAX_SIDE : 0;
    default:
      return UPSCALE_MAX_SIDE;
  }
}

/** How one backend stands, as the worker that routes to it sees it. */
export interface BackendStatus {
  name: string;
  type: string;
  /** `healthy`; `unhealthy` (circuit open: skipped until `retryAt`); `probing` (one trial call). */
  state: 'healthy' | 'unhealthy' | 'probing';
  priority: number;
  weight: number;
  tasks: readonly BackendTask[];
  calls: number;
  failures: number;
  /** Code of the last failure, if any. */
  lastError?: string;
  /** Latency of the last successful call and a moving average, ms. */
  latencyMs?: { last: number; average: number };
  /** When an unhealthy backend gets its trial call (epoch ms). */
  retryAt?: number;
}

/** What the process running the router shows the relay beside it (same process only). */
export interface BackendHealth {
  status(): BackendStatus[];
  /** Prometheus text of the per-backend metrics. */
  metrics(): Promise<string>;
}
