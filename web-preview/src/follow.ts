/**
 * Follow one job to its images: over the WebSocket first (status frames, then per image one
 * `image` text frame and ONE binary frame); when the socket cannot open or drops, reconnect with
 * backoff (images already received are not reported twice); when that keeps failing, poll
 * `GET /jobs/:id` and fetch each `GET /jobs/:id/image?i=N`.
 */
import { ApiError, readApiError, request } from './api.ts';

/** How the page is hearing about a job, shown discreetly. */
export type Transport = 'websocket' | 'reconnecting' | 'polling' | 'unreachable';

/** How many of a job's images output safety blocked or held, of how many made. */
export interface Withheld {
  blocked: number;
  held: number;
  of: number;
}

/** One image of a job, as received. */
export interface FollowedImage {
  /** 0-based position among the images delivered. */
  index: number;
  /** Images delivered (withheld ones are not counted). */
  count: number;
  blob: Blob;
  seed: number;
  width: number;
  height: number;
  generationMs: number | undefined;
  /** Output safety flagged it: show it blurred until clicked. */
  spoiler: boolean;
}

/** How far the generator has got, as it reported (never an estimate). */
export interface Progress {
  /** 0–1. */
  fraction: number;
  step?: number;
  steps?: number;
}

/** Everything a follower reports. */
export type FollowEvent =
  | { kind: 'status'; state: 'queued'; position?: number }
  /** Generating; `progress` when the generator reported some. */
  | { kind: 'status'; state: 'generating'; progress?: Progress }
  /** The latest low-resolution preview of the image forming. */
  | { kind: 'preview'; blob: Blob; width?: number; height?: number }
  | { kind: 'transport'; transport: Transport }
  | { kind: 'image'; image: FollowedImage; via: 'websocket' | 'polling' }
  | {
      /** Every image delivered has been reported. */
      kind: 'done';
      count: number;
      withheld?: Withheld | undefined;
      via: 'websocket' | 'polling';
    }
  | { kind: 'failed'; state: 'failed' | 'expired'; code: string; message: string }
  /** The job was cancelled (by this page or anyone holding its id). */
  | { kind: 'cancelled' };

/** Options of {@link followJob}. */
export interface FollowOptions {
  jobId: string;
  wsUrl: string;
  statusUrl: string;
  imageUrl: string;
  onEvent: (event: FollowEvent) => void;
  /** Waits before each reconnect; when they run out, polling takes over. */
  reconnectDelaysMs?: readonly number[];
  /** Poll interval while the job runs. */
  pollMs?: number;
}

/** A running follower. */
export interface Follower {
  stop(): void;
}

interface ImageInfo {
  index?: number;
  contentType?: string;
  seed?: number;
  width?: number;
  height?: number;
  spoiler?: boolean;
  url?: string;
}

interface StatusBody extends ImageInfo {
  state?: string;
  position?: number;
  progress?: number;
  step?: number;
  steps?: number;
  count?: number;
  generationMs?: number;
  withheld?: Withheld;
  images?: ImageInfo[];
  error?: { code?: string; message?: string };
}

interface ImageFrame extends ImageInfo {
  type?: string;
  bytes?: number;
  count?: number;
  generationMs?: number;
  withheld?: Withheld;
}

/** A status body's progress, when it carries a usable one. */
export function progressOf(body: {
  progress?: unknown;
  step?: unknown;
  steps?: unknown;
}): Progress | undefined {
  const { progress, step, steps } = body;
  const whole = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 0;
  let fraction: number | undefined;
  if (typeof progress === 'number' && Number.isFinite(progress)) fraction = progress;
  else if (whole(step) && whole(steps) && steps > 0) fraction = step / steps;
  if (fraction === undefined) return undefined;
  return {
    fraction: Math.min(1, Math.max(0, fraction)),
    ...(whole(step) ? { step } : {}),
    ...(whole(steps) && steps > 0 ? { steps } : {}),
  };
}

const DEFAULT_RECONNECT_MS = [400, 1200, 3000] as const;
/** How long a job the relay says it has not heard of is still asked after (the job TTL and more). */
const UNKNOWN_JOB_PATIENCE_MS = 20 * 60_000;

/** Follow a job until it ends or `stop()` is called. */
export function followJob(opts: FollowOptions): Follower {
  const delays = opts.reconnectDelaysMs ?? DEFAULT_RECONNECT_MS;
  const pollMs = opts.pollMs ?? 1000;
  let finished = false;
  let socket: WebSocket | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let failures = 0;
  let transport: Transport | undefined;
  const followedSince = Date.now();
  /** Indexes already reported: a reconnect or a poll after a drop resends them. */
  const received = new Set<number>();

  const emit = (event: FollowEvent) => {
    if (!finished) opts.onEvent(event);
  };
  const finish = (event: FollowEvent) => {
    emit(event);
    finished = true;
    clearTimeout(timer);
    socket?.close();
  };
  const setTransport = (next: Transport) => {
    if (next === transport) return;
    transport = next;
    emit({ kind: 'transport', transport: next });
  };
  const fail = (state: 'failed' | 'expired', code: string | undefined, message: string) =>
    finish({ kind: 'failed', state, code: code ?? 'GENERATION_FAILED', message });

  /** Report one image (once per index); when the last one is in, the job is done. */
  const gotImage = (
    info: ImageInfo & { count: number; generationMs?: number | undefined },
    blob: Blob,
    withheld: Withheld | undefined,
    via: 'websocket' | 'polling',
  ) => {
    const index = info.index ?? received.size;
    if (!received.has(index)) {
      received.add(index);
      emit({
        kind: 'image',
        image: {
          index,
          count: info.count,
          blob,
          seed: info.seed ?? 0,
          width: info.width ?? 0,
          height: info.height ?? 0,
          generationMs: info.generationMs,
          spoiler: info.spoiler === true,
        },
        via,
      });
    }
    if (received.size >= info.count) finish({ kind: 'done', count: info.count, withheld, via });
  };

  const connect = () => {
    if (finished) return;
    /** The frame the next binary frame belongs to: an image, or a preview. */
    let meta: ImageFrame | undefined;
    let heard = false;
    const ws = new WebSocket(opts.wsUrl);
    socket = ws;
    ws.binaryType = 'blob';
    ws.onopen = () => setTransport('websocket');
    ws.onmessage = (message: MessageEvent<unknown>) => {
      heard = true;
      failures = 0;
      if (message.data instanceof Blob) {
        if (!meta) return;
        const frame = meta;
        meta = undefined;
        const blob = new Blob([message.data], { type: frame.contentType ?? 'image/png' });
        if (frame.type === 'preview') {
          // A preview never replaces an image already in.
          if (received.size === 0)
            emit({
              kind: 'preview',
              blob,
              ...(frame.width ? { width: frame.width } : {}),
              ...(frame.height ? { height: frame.height } : {}),
            });
          return;
        }
        gotImage({ ...frame, count: frame.count ?? 1 }, blob, frame.withheld, 'websocket');
        return;
      }
      let frame: StatusBody & ImageFrame;
      try {
        frame = JSON.parse(String(message.data));
      } catch {
        return;
      }
      if (frame.type === 'image' || frame.type === 'preview') meta = frame;
      else if (frame.type === 'status') onStatus(frame, 'websocket');
    };
    ws.onclose = () => {
      if (finished || socket !== ws) return;
      // A socket that carried frames and then dropped gets a fresh round of retries.
      if (!heard) failures++;
      else failures = 1;
      if (failures > delays.length) {
        startPolling();
        return;
      }
      setTransport('reconnecting');
      timer = setTimeout(connect, delays[failures - 1]);
    };
  };

  const onStatus = (body: StatusBody, via: 'websocket' | 'polling') => {
    switch (body.state) {
      case 'queued':
        emit({
          kind: 'status',
          state: 'queued',
          ...(body.position === undefined ? {} : { position: body.position }),
        });
        return;
      case 'generating': {
        const progress = progressOf(body);
        emit({ kind: 'status', state: 'generating', ...(progress ? { progress } : {}) });
        return;
      }
      case 'cancelled':
        finish({ kind: 'cancelled' });
        return;
      case 'failed':
        fail('failed', body.error?.code, body.error?.message ?? 'the job failed');
        return;
      case 'expired':
        fail('expired', body.error?.code ?? 'JOB_EXPIRED', body.error?.message ?? 'expired');
        return;
      case 'done':
        // Over the socket the image frames follow; when polling, fetch the bytes.
        if (via === 'polling') void fetchImages(body);
        return;
    }
  };

  let pollFailures = 0;
  const poll = async () => {
    if (finished) return;
    try {
      const response = await request(opts.statusUrl, {
        headers: { accept: 'application/json' },
        cache: 'no-store',
      });
      if (!response.ok) {
        const err = await readApiError(response);
        // A relay restarted without its job ledger has not heard of the job: that is not an
        // ending. Keep asking (the worker's next push teaches it) for as long as a job can live.
        if (response.status === 404 && Date.now() - followedSince > UNKNOWN_JOB_PATIENCE_MS)
          return fail('expired', 'JOB_NOT_FOUND', err.message);
        throw err;
      }
      pollFailures = 0;
      setTransport('polling');
      const body = (await response.json()) as StatusBody;
      onStatus(body, 'polling');
      if (body.state === 'done') return;
    } catch (err) {
      pollFailures++;
      if (err instanceof ApiError && err.code === 'UNREACHABLE' && pollFailures >= 3)
        setTransport('unreachable');
    }
    if (!finished)
      timer = setTimeout(poll, Math.min(pollMs * 2 ** Math.max(0, pollFailures - 1), 10_000));
  };

  /** Fetch every image a finished job lists (one, from `imageUrl`, for a relay that lists none). */
  const fetchImages = async (status: StatusBody) => {
    const listed: ImageInfo[] = status.images?.length
      ? status.images
      : [{ ...status, index: 0, url: opts.imageUrl }];
    const count = listed.length;
    try {
      for (const [i, info] of listed.entries()) {
        const index = info.index ?? i;
        if (received.has(index)) continue;
        const url = info.url ?? `${opts.imageUrl}?i=${index}`;
        const response = await request(url, { cache: 'no-store' });
        if (response.status === 409 || response.status === 410 || response.status === 404) {
          const err = await readApiError(response);
          if (err.code === 'NOT_READY') {
            timer = setTimeout(poll, pollMs);
            return;
          }
          fail(err.code === 'JOB_FAILED' ? 'failed' : 'expired', err.code, err.message);
          return;
        }
        if (!response.ok) throw await readApiError(response);
        const blob = await response.blob();
        if (finished) return;
        gotImage(
          { ...info, index, count, generationMs: status.generationMs },
          blob,
          status.withheld,
          'polling',
        );
      }
    } catch {
      pollFailures++;
      if (!finished) timer = setTimeout(poll, pollMs);
    }
  };

  const startPolling = () => {
    if (finished) return;
    socket = undefined;
    void poll();
  };

  if (typeof WebSocket === 'function') connect();
  else startPolling();

  return {
    stop() {
      finished = true;
      clearTimeout(timer);
      socket?.close();
    },
  };
}
