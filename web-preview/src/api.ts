/** The relay's HTTP API as the page uses it. */
import type { Quota } from '../../contracts/errors.ts';
import type { AspectRatio, JobTask, VaryPreset } from '../../contracts/limits.ts';

/** A vary's strength: Midjourney's two presets, or a number in (0, 1] (an image prompt's slider). */
export type Strength = VaryPreset | number;

/**
 * The input image of a vary or upscale as `POST /enqueue` takes it: a signed `/inputs/` link
 * (from {@link uploadImage} or {@link imageLink}), and what is known of the image.
 */
export interface InputRef {
  image: { kind: 'url'; url: string };
  jobId?: string;
  index?: number;
  seed?: number;
  width?: number;
  height?: number;
}

/** What the page asks for (`POST /enqueue`'s body). */
export interface ImagineRequest {
  prompt: string;
  /** A new image's shape; left out for a vary (its input's shape) and an upscale (twice it). */
  aspect?: AspectRatio;
  seed?: number;
  /** One of the models `/healthz` lists, when the server offers a choice. */
  model?: string;
  task?: JobTask;
  /** Images to make, 1–4 (an upscale makes one and leaves it out). */
  count?: number;
  input?: InputRef;
  strength?: Strength;
}

/** `POST /enqueue`'s answer (202). */
export interface Enqueued {
  jobId: string;
  ws: string;
  state: 'queued';
  position: number;
  seed: number;
  width: number;
  height: number;
  status: string;
  image: string;
  generator: string;
  demo: boolean;
  notice?: string;
  /** What is left of the requester's images per window after this job (when limits count). */
  quota?: Quota;
}

/** A refusal from the server (`{error:{code,message}}`), or the network failing (`UNREACHABLE`). */
export class ApiError extends Error {
  readonly code: string;
  readonly status: number;
  readonly retryAfterSeconds: number | undefined;
  /** How many images are left in the window, on a rate-limit refusal that says. */
  readonly quota: Quota | undefined;

  constructor(
    code: string,
    message: string,
    status: number,
    retryAfterSeconds?: number,
    quota?: Quota,
  ) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.status = status;
    this.retryAfterSeconds = retryAfterSeconds;
    this.quota = quota;
  }
}

/** A 429's `error.quota`, when it is one the page can read (numbers where numbers belong). */
function readQuota(value: unknown): Quota | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const q = value as Record<string, unknown>;
  const count = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;
  if (q.of !== 'user' && q.of !== 'scope') return undefined;
  if (!count(q.limit) || !count(q.remaining) || !count(q.windowSeconds) || !count(q.resetSeconds))
    return undefined;
  return {
    of: q.of,
    limit: q.limit,
    remaining: q.remaining,
    windowSeconds: q.windowSeconds,
    resetSeconds: q.resetSeconds,
  };
}

/** Read an error body, whatever the server (or a proxy in front of it) sent. */
export async function readApiError(response: Response): Promise<ApiError> {
  const header = Number(response.headers.get('retry-after'));
  let code = `HTTP_${response.status}`;
  let message = response.statusText || `HTTP ${response.status}`;
  let retryAfter = Number.isFinite(header) && header > 0 ? header : undefined;
  let quota: Quota | undefined;
  try {
    const body = (await response.json()) as {
      error?: { code?: string; message?: string; retryAfterSeconds?: number; quota?: unknown };
    };
    if (body.error?.code) code = body.error.code;
    if (body.error?.message) message = body.error.message;
    if (retryAfter === undefined && body.error?.retryAfterSeconds)
      retryAfter = body.error.retryAfterSeconds;
    quota = readQuota(body.error?.quota);
  } catch {
    // Not JSON (a proxy's error page): the status says enough.
  }
  return new ApiError(code, message, response.status, retryAfter, quota);
}

/** Fetch, turning a network failure into an `UNREACHABLE` ApiError. */
export async function request(url: string, init?: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (err) {
    if (init?.signal?.aborted) throw err;
    throw new ApiError('UNREACHABLE', 'the server cannot be reached', 0);
  }
}

/** Start a job. */
export async function enqueue(req: ImagineRequest): Promise<Enqueued> {
  const response = await request('/enqueue', {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify(req),
  });
  if (response.status !== 202) throw await readApiError(response);
  return (await response.json()) as Enqueued;
}

/** What `DELETE /jobs/:id` did. */
export type CancelOutcome =
  | { outcome: 'cancelled' }
  /** It had already ended (`state`: done, failed, expired or cancelled): nothing was cancelled. */
  | { outcome: 'already-finished'; state: string }
  /** The relay does not know the job (any more). */
  | { outcome: 'unknown' };

/** Cancel a job (the id is the capability). */
export async function cancelJob(jobId: string): Promise<CancelOutcome> {
  const response = await request(`/jobs/${encodeURIComponent(jobId)}`, {
    method: 'DELETE',
    headers: { accept: 'application/json' },
  });
  if (response.status === 200) return { outcome: 'cancelled' };
  if (response.status === 404) return { outcome: 'unknown' };
  if (response.status === 409) {
    const body = (await response.json().catch(() => ({}))) as {
      state?: unknown;
      error?: { code?: string; message?: string };
    };
    if (body.error?.code === 'ALREADY_FINISHED')
      return {
        outcome: 'already-finished',
        state: typeof body.state === 'string' ? body.state : 'done',
      };
    throw new ApiError(body.error?.code ?? 'HTTP_409', body.error?.message ?? 'conflict', 409);
  }
  throw await readApiError(response);
}

/** `POST /uploads`' answer (201): a short-lived signed link to the image the page sent. */
export interface Uploaded {
  url: string;
  expiresAt: number;
  contentType: string;
  width: number;
  height: number;
}

/** Send the page's own copy of an image to the relay's memory; answers a signed link to it. */
export async function uploadImage(image: Blob): Promise<Uploaded> {
  const response = await request('/uploads', {
    method: 'POST',
    headers: { 'content-type': image.type, accept: 'application/json' },
    body: image,
  });
  if (response.status !== 201) throw await readApiError(response);
  return (await response.json()) as Uploaded;
}

/** A signed link to image `index` of a finished job still in the relay's buffer. */
export async function imageLink(jobId: string, index: number): Promise<{ url: string }> {
  const response = await request(`/jobs/${encodeURIComponent(jobId)}/image-link?i=${index}`, {
    method: 'POST',
    headers: { accept: 'application/json' },
  });
  if (!response.ok) throw await readApiError(response);
  return (await response.json()) as { url: string };
}

/** What `/healthz` says about the generator (and the upload limit), or undefined when unreadable. */
export interface ServerInfo {
  generator: string;
  demo: boolean;
  models: string[];
  /** Largest input image the relay takes, when it says. */
  inputImageMaxBytes?: number;
  /** Largest side of any image it makes (`LIMIT_IMAGE_SIDE`, upscales included), when it says. */
  maxImageSide?: number;
  /** Largest side of an upscale its generators make (0: none upscales), when it says. */
  upscaleMaxSide?: number;
}

/** Read `/healthz`; undefined when it cannot be read. */
export async function fetchGeneratorInfo(): Promise<ServerInfo | undefined> {
  try {
    const response = await fetch('/healthz', { headers: { accept: 'application/json' } });
    if (!response.ok) return undefined;
    const body = (await response.json()) as {
      generator?: unknown;
      demo?: unknown;
      models?: unknown;
      inputImageMaxBytes?: unknown;
      maxImageSide?: unknown;
      upscaleMaxSide?: unknown;
    };
    if (typeof body.generator !== 'string') return undefined;
    const models = Array.isArray(body.models)
      ? body.models.filter((m): m is string => typeof m === 'string')
      : [];
    const positive = (v: unknown): v is number => typeof v === 'number' && v > 0;
    return {
      generator: body.generator,
      demo: body.demo === true,
      models,
      ...(positive(body.inputImageMaxBytes) ? { inputImageMaxBytes: body.inputImageMaxBytes } : {}),
      ...(positive(body.maxImageSide) ? { maxImageSide: body.maxImageSide } : {}),
      ...(typeof body.upscaleMaxSide === 'number' && body.upscaleMaxSide >= 0
        ? { upscaleMaxSide: body.upscaleMaxSide }
        : {}),
    };
  } catch {
    return undefined;
  }
}
