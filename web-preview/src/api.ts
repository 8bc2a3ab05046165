/** The relay's HTTP API as the page uses it. */
import type { AspectRatio } from '../../contracts/limits.ts';

/** What the page asks for. */
export interface ImagineRequest {
  prompt: string;
  aspect: AspectRatio;
  seed?: number;
  /** One of the models `/healthz` lists, when the server offers a choice. */
  model?: string;
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
}

/** A refusal from the server (`{error:{code,message}}`), or the network failing (`UNREACHABLE`). */
export class ApiError extends Error {
  readonly code: string;
  readonly status: number;
  readonly retryAfterSeconds: number | undefined;

  constructor(code: string, message: string, status: number, retryAfterSeconds?: number) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.status = status;
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** Read an error body, whatever the server (or a proxy in front of it) sent. */
export async function readApiError(response: Response): Promise<ApiError> {
  const header = Number(response.headers.get('retry-after'));
  let code = `HTTP_${response.status}`;
  let message = response.statusText || `HTTP ${response.status}`;
  let retryAfter = Number.isFinite(header) && header > 0 ? header : undefined;
  try {
    const body = (await response.json()) as {
      error?: { code?: string; message?: string; retryAfterSeconds?: number };
    };
    if (body.error?.code) code = body.error.code;
    if (body.error?.message) message = body.error.message;
    if (retryAfter === undefined && body.error?.retryAfterSeconds)
      retryAfter = body.error.retryAfterSeconds;
  } catch {
    // Not JSON (a proxy's error page): the status says enough.
  }
  return new ApiError(code, message, response.status, retryAfter);
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

/** What `/healthz` says about the generator, or undefined when it cannot be read. */
export async function fetchGeneratorInfo(): Promise<
  { generator: string; demo: boolean; models: string[] } | undefined
> {
  try {
    const response = await fetch('/healthz', { headers: { accept: 'application/json' } });
    if (!response.ok) return undefined;
    const body = (await response.json()) as {
      generator?: unknown;
      demo?: unknown;
      models?: unknown;
    };
    if (typeof body.generator !== 'string') return undefined;
    const models = Array.isArray(body.models)
      ? body.models.filter((m): m is string => typeof m === 'string')
      : [];
    return { generator: body.generator, demo: body.demo === true, models };
  } catch {
    return undefined;
  }
}
