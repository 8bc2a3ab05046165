/**
 * In-memory job state for one relay instance: queued order (for "N ahead"), the latest state of
 * each job, and a short, byte-capped TTL buffer of finished images for late subscribers.
 * Nothing touches disk.
 */
import { EventEmitter } from 'node:events';
import type { Job, JobTask } from '../contracts/job.ts';
import { isTerminal, type JobState, type PushSource } from '../contracts/push.ts';
import type { JobRegistry } from '../submit/submit.ts';

/** What is known of one image of a job besides its bytes. */
export interface ImageInfo {
  seed?: number | undefined;
  width?: number | undefined;
  height?: number | undefined;
}

/**
 * A finished image held in memory, as the chunks it arrived in: sending it to WebSockets needs
 * no copy (one fragmented message); `bytes` joins the chunks on first use and keeps the joined
 * buffer in their place (one copy held, not two).
 */
export class BufferedImage {
  readonly size: number;
  readonly contentType: string;
  /** Its own seed and size (image i of a job has its own seed). */
  readonly info: ImageInfo;
  #chunks: readonly Buffer[];

  constructor(chunks: Buffer | readonly Buffer[], contentType: string, info: ImageInfo = {}) {
    this.#chunks = Buffer.isBuffer(chunks) ? [chunks] : chunks;
    this.size = this.#chunks.reduce((n, c) => n + c.length, 0);
    this.contentType = contentType;
    this.info = info;
  }

  /** The image as the chunks it arrived in (one chunk once `bytes` has joined them). */
  get chunks(): readonly Buffer[] {
    return this.#chunks;
  }

  /** The whole image as one buffer. */
  get bytes(): Buffer {
    if (this.#chunks.length !== 1) this.#chunks = [Buffer.concat(this.#chunks, this.size)];
    return this.#chunks[0]!;
  }

  /** The first `n` bytes (for recognising the format), without joining the chunks. */
  head(n: number): Buffer {
    const first = this.#chunks[0];
    if (first && first.length >= n) return first.subarray(0, n);
    const out: Buffer[] = [];
    let taken = 0;
    for (const c of this.#chunks) {
      if (taken >= n) break;
      out.push(c.subarray(0, n - taken));
      taken += Math.min(c.length, n - taken);
    }
    return Buffer.concat(out);
  }
}

/** What a job says of its source image (no reference: only which image it was). */
function sourceOf(job: Job): PushSource | undefined {
  if (!job.input) return undefined;
  const { image: _image, ...source } = job.input;
  return source;
}

/** How far a generating job has got, as its worker last reported (not a state change). */
export interface JobProgress {
  step: number;
  steps: number;
  /** The generator's latest low-resolution preview, when it sends one (replaced by the next). */
  preview?: BufferedImage | undefined;
}

/** `step / steps`, clamped to 0–1. */
export function progressFraction(p: Pick<JobProgress, 'step' | 'steps'>): number {
  return p.steps > 0 ? Math.min(1, Math.max(0, p.step / p.steps)) : 0;
}

/** What the relay knows of a job. */
export interface JobRecord {
  jobId: string;
  state: JobState;
  createdAt: number;
  updatedAt: number;
  platform?: string | undefined;
  /** The requester's id on its platform (who may cancel it from chat). */
  userId?: string | undefined;
  prompt?: string | undefined;
  /** The job's base seed (image i has `(seed + i) mod 2^32`). */
  seed?: number | undefined;
  /** Size of each output image. */
  width?: number | undefined;
  height?: number | undefined;
  task?: JobTask | undefined;
  count?: number | undefined;
  steps?: number | undefined;
  strength?: number | undefined;
  /** The model the job asked for, when it named one. */
  model?: string | undefined;
  /** A vary's or upscale's source image. */
  source?: PushSource | undefined;
  generator?: string | undefined;
  generationMs?: number | undefined;
  error?: { code: string; message: string } | undefined;
  /** Sealed reply target for chat delivery. */
  replyTarget?: string | undefined;
  /** The finished images, in order; dropped from memory together. */
  images?: readonly BufferedImage[] | undefined;
  /** Output safety: which pushed images are spoilers (hidden behind a click), by index. */
  spoilers?: boolean[] | undefined;
  /** Output safety: how many of the job's images were blocked or held (a `done` job). */
  withheld?: import('../contracts/safety.ts').WithheldCount | undefined;
  /** The images were evicted from the buffer (TTL or byte cap). */
  imageEvicted?: boolean;
  /** The last change came from another relay instance, which then owns the job's side effects. */
  remote?: boolean;
  /** Generating: the worker's latest progress report; dropped when the job ends. */
  progress?: JobProgress | undefined;
  /** Cancelled while still queued: it never started, so its quota goes back. */
  cancelledBeforeStart?: boolean | undefined;
}

/** A reported change to a job: its new state and whatever else the report says. */
export type JobChange = { state: JobState } & {
  [K in Exclude<keyof JobRecord, 'jobId' | 'images' | 'state' | 'remote' | 'progress'>]?:
    | JobRecord[K]
    | undefined;
};

/** A queued job as another relay instance announced it (no reply target: it delivers). */
export type RemoteQueued = Pick<JobRecord, 'jobId' | 'createdAt'> &
  Partial<
    Pick<
      JobRecord,
      | 'platform'
      | 'userId'
      | 'prompt'
      | 'seed'
      | 'width'
      | 'height'
      | 'task'
      | 'count'
      | 'steps'
      | 'strength'
    >
  >;

/** A job as a relay remembered it beyond its memory (the job ledger): state, never bytes. */
export type RecalledJob = Pick<JobRecord, 'jobId' | 'state' | 'createdAt'> &
  Partial<Pick<JobRecord, 'platform' | 'userId' | 'seed' | 'width' | 'height' | 'error'>>;

/** A change to a job, as emitted to the hub and chat delivery. */
export interface JobUpdate {
  record: JobRecord;
  /** Queued jobs ahead, when the job is queued. */
  position?: number;
  /**
   * The change came from another relay instance: update waiters, but chat delivery, metrics
   * and admission already happened there.
   */
  remote?: boolean;
}

/** A generating job's progress report, as emitted (`progress`) to the hub, chat and fan-out. */
export interface ProgressUpdate {
  record: JobRecord;
  progress: JobProgress;
  /** The report came from another relay instance (chat delivery happens there). */
  remote?: boolean;
}

/** Options of {@link JobTracker}. */
export interface JobTrackerOptions {
  resultTtlMs: number;
  maxBufferedBytes: number;
  /** How long a job may stay unfinished before the tracker forgets it (and marks it expired). */
  jobTtlMs: number;
  now?: () => number;
}

export { isTerminal };

/**
 * Emits `update` (JobUpdate) on every state change, `progress` (ProgressUpdate) on a generating
 * job's progress report (no state change), `positions` when the queued order moved and
 * `forgotten` ({ jobId, remote }) when a queued job is dropped because it could not be sent.
 */
export class JobTracker extends EventEmitter implements JobRegistry {
  private readonly jobs = new Map<string, JobRecord>();
  /** Queued job ids in queue order, each with its sequence number (see {@link position}). */
  private readonly queued = new Map<string, number>();
  private nextSeq = 0;
  /** The sequence number of the first queued job (`nextSeq` when none is queued). */
  private headSeq = 0;
  /**
   * Sequence numbers of jobs that left the queue from behind its head, ascending: a job's
   * position is its distance from the head less the gaps before it, found without a scan.
   */
  private readonly gaps: number[] = [];
  /** Finished jobs with images, oldest first, for eviction. */
  private readonly buffered = new Map<string, number>();
  private bufferedBytesTotal = 0;
  private readonly now: () => number;
  private sweeper: NodeJS.Timeout | undefined;
  /** Callers waiting for a job this instance does not know yet (see {@link whenKnown}). */
  private readonly arrivals = new Map<string, Set<(record: JobRecord) => void>>();

  private readonly opts: JobTrackerOptions;

  constructor(opts: JobTrackerOptions) {
    super();
    this.opts = opts;
    this.now = opts.now ?? Date.now;
  }

  /** Start the periodic sweep of expired entries. */
  start(intervalMs = 1000): void {
    this.sweeper ??= setInterval(() => this.sweep(), intervalMs);
    this.sweeper.unref();
  }

  stop(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  get(jobId: string): JobRecord | undefined {
    return this.jobs.get(jobId);
  }

  /** Bytes of images held in memory. */
  get bufferedBytes(): number {
    return this.bufferedBytesTotal;
  }

  /** Jobs known (any state). */
  get size(): number {
    return this.jobs.size;
  }

  /** Number of queued jobs ahead of this one (0 when next), or undefined when not queued. */
  position(jobId: string): number | undefined {
    const seq = this.queued.get(jobId);
    if (seq === undefined) return undefined;
    return seq - this.headSeq - countBelow(this.gaps, seq);
  }

  /** Take a job off the queued list; true when it was queued. */
  private leaveQueue(jobId: string): boolean {
    const seq = this.queued.get(jobId);
    if (seq === undefined) return false;
    this.queued.delete(jobId);
    if (seq !== this.headSeq) {
      this.gaps.splice(countBelow(this.gaps, seq), 0, seq);
      return true;
    }
    // The head left: the next head is the next number that is not a gap.
    let head = seq + 1;
    while (this.gaps.length > 0 && this.gaps[0] === head) {
      this.gaps.shift();
      head++;
    }
    this.headSeq = head;
    return true;
  }

  /** Jobs waiting in this instance's view of the queue. */
  get queuedCount(): number {
    return this.queued.size;
  }

  registerQueued(job: Job): { position: number } {
    const existing = this.jobs.get(job.jobId);
    if (existing) return { position: this.position(job.jobId) ?? 0 };
    const record: JobRecord = {
      jobId: job.jobId,
      state: 'queued',
      createdAt: job.createdAt,
      updatedAt: this.now(),
      platform: job.origin.platform,
      userId: job.origin.userId,
      prompt: job.prompt,
      seed: job.params.seed,
      width: job.params.width,
      height: job.params.height,
      task: job.task,
      count: job.count,
      steps: job.params.steps,
      strength: job.strength,
      model: job.model,
      source: sourceOf(job),
      replyTarget: job.replyTarget,
    };
    return { position: this.addQueued(record, false) };
  }

  /** Record a job another relay instance queued (fan-out), so clients here can follow it. */
  learnQueued(info: RemoteQueued): void {
    if (this.jobs.has(info.jobId)) return;
    this.addQueued({ ...info, state: 'queued', updatedAt: this.now() }, true);
  }

  /**
   * Learn a job this instance has no record of from the ledger (it was queued before a restart,
   * or through another relay before this one started). Its side effects (chat delivery, metrics,
   * the concurrency slot) happen when the worker pushes it; a finished one has no image here.
   */
  recall(entry: RecalledJob): JobRecord {
    const known = this.jobs.get(entry.jobId);
    if (known) return known;
    const record: JobRecord = { ...entry, updatedAt: this.now(), remote: true };
    if (entry.state === 'done') record.imageEvicted = true;
    this.jobs.set(record.jobId, record);
    if (record.state === 'queued') this.queued.set(record.jobId, this.nextSeq++);
    this.announce(record);
    return record;
  }

  private addQueued(record: JobRecord, remote: boolean): number {
    if (remote) record.remote = true;
    this.jobs.set(record.jobId, record);
    this.queued.set(record.jobId, this.nextSeq++);
    const position = this.queued.size - 1;
    this.emit('update', { record, position, ...(remote ? { remote } : {}) } satisfies JobUpdate);
    this.announce(record);
    return position;
  }

  forget(jobId: string, opts: { remote?: boolean } = {}): void {
    const known = this.jobs.delete(jobId);
    if (this.leaveQueue(jobId)) this.emit('positions');
    this.dropImage(jobId);
    if (known) this.emit('forgotten', { jobId, remote: opts.remote === true });
  }

  /**
   * The job's record, waiting up to `timeoutMs` for it to become known: with fan-out, a client
   * may ask this instance about a job a moment before the event announcing it arrives.
   */
  async whenKnown(jobId: string, timeoutMs: number): Promise<JobRecord | undefined> {
    const known = this.jobs.get(jobId);
    if (known || timeoutMs <= 0) return known;
    return new Promise((resolve) => {
      let waiting = this.arrivals.get(jobId);
      if (!waiting) {
        waiting = new Set();
        this.arrivals.set(jobId, waiting);
      }
      const set = waiting;
      const done = (record: JobRecord | undefined) => {
        clearTimeout(timer);
        set.delete(done);
        if (set.size === 0 && this.arrivals.get(jobId) === set) this.arrivals.delete(jobId);
        resolve(record);
      };
      const timer = setTimeout(() => done(undefined), timeoutMs);
      set.add(done);
    });
  }

  private announce(record: JobRecord): void {
    const waiting = this.arrivals.get(record.jobId);
    if (waiting) for (const resolve of [...waiting]) resolve(record);
  }

  /**
   * Apply a state change reported by a worker (or, `remote`, by another relay instance).
   * Returns `duplicate: true` (and changes nothing) when the job is already final: SQS is
   * at-least-once, so pushes can repeat.
   */
  apply(
    jobId: string,
    change: JobChange,
    images?: readonly BufferedImage[],
    opts: { remote?: boolean } = {},
  ): { duplicate: boolean; record: JobRecord } {
    const now = this.now();
    const remote = opts.remote === true;
    let record = this.jobs.get(jobId);
    if (record && isTerminal(record.state)) return { duplicate: true, record };
    const learned = !record;
    if (!record) {
      // A job queued through another instance, or before a restart: learn it from the push.
      record = { jobId, state: change.state, createdAt: change.createdAt ?? now, updatedAt: now };
      this.jobs.set(jobId, record);
    }
    for (const [key, value] of Object.entries(change)) {
      if (value !== undefined) (record as unknown as Record<string, unknown>)[key] = value;
    }
    record.updatedAt = now;
    // Progress (and its preview's bytes) means nothing once the job has ended or left generating.
    if (change.state !== 'generating') record.progress = undefined;
    if (remote) record.remote = true;
    else delete record.remote;
    const leftQueue = this.leaveQueue(jobId);
    const kept = images && images.length > 0 ? this.storeImages(record, images) : true;
    this.emit('update', { record, ...(remote ? { remote } : {}) } satisfies JobUpdate);
    if (learned) this.announce(record);
    // Too big to keep for late clients: the waiters and chat above still got it.
    if (!kept) {
      record.images = undefined;
      record.imageEvicted = true;
    }
    if (leftQueue) this.emit('positions');
    return { duplicate: false, record };
  }

  /**
   * Record a generating job's progress (the latest replaces the one before; not a state change,
   * so nothing is written to the ledger and chat is not told of a new state). Ignored unless the
   * job is known here and generating. Returns whether it was applied.
   */
  reportProgress(jobId: string, progress: JobProgress, opts: { remote?: boolean } = {}): boolean {
    const record = this.jobs.get(jobId);
    if (record?.state !== 'generating') return false;
    record.progress = progress;
    // A progress report shows the job is alive (WebSocket idle checks read updatedAt).
    record.updatedAt = this.now();
    const remote = opts.remote === true;
    this.emit('progress', {
      record,
      progress,
      ...(remote ? { remote } : {}),
    } satisfies ProgressUpdate);
    return true;
  }

  /** Jobs not finished yet (queued or generating), as this instance knows them. */
  unfinished(): JobRecord[] {
    return [...this.jobs.values()].filter((r) => !isTerminal(r.state));
  }

  /** Ids of queued jobs with their positions, in order. */
  *queuedPositions(): Generator<[string, number]> {
    let i = 0;
    for (const id of this.queued.keys()) yield [id, i++];
  }

  /** Attach the images; returns false when they are too big to keep in the buffer afterwards. */
  private storeImages(record: JobRecord, images: readonly BufferedImage[]): boolean {
    record.images = images;
    const size = images.reduce((n, image) => n + image.size, 0);
    if (size > this.opts.maxBufferedBytes) return false;
    this.buffered.set(record.jobId, size);
    this.bufferedBytesTotal += size;
    // Over the cap: the oldest images go first (this one is newest, so it stays).
    for (const [id] of this.buffered) {
      if (this.bufferedBytesTotal <= this.opts.maxBufferedBytes) break;
      this.dropImage(id);
    }
    return true;
  }

  private dropImage(jobId: string): void {
    const size = this.buffered.get(jobId);
    if (size === undefined) return;
    this.buffered.delete(jobId);
    this.bufferedBytesTotal -= size;
    const record = this.jobs.get(jobId);
    if (record?.images) {
      record.images = undefined;
      record.imageEvicted = true;
    }
  }

  /** Forget finished jobs past the result TTL and expire jobs stuck past the job TTL. */
  sweep(): void {
    const now = this.now();
    for (const record of this.jobs.values()) {
      if (isTerminal(record.state)) {
        if (now - record.updatedAt > this.opts.resultTtlMs) {
          this.dropImage(record.jobId);
          this.jobs.delete(record.jobId);
        }
      } else if (now - record.createdAt > this.opts.jobTtlMs) {
        // A job last changed by another instance is expired there, with its side effects.
        this.apply(
          record.jobId,
          {
            state: 'expired',
            error: { code: 'JOB_EXPIRED', message: 'the job was not finished in time' },
          },
          undefined,
          { remote: record.remote === true },
        );
      }
    }
  }
}

/** How many of the ascending numbers are below `n` (binary search). */
function countBelow(sorted: readonly number[], n: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < n) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
