/**
 * The WebSocket hub: waiters per job. Text frames carry status (with progress while
 * generating); a preview goes out as a `preview` frame followed by ONE binary frame, and each
 * finished image as one JSON `image` frame (with its `index` and the job's `count`) followed by
 * ONE binary frame holding its bytes, in order. A job of one image is exactly the single-image
 * exchange. The frame shapes are the contract in contracts/ws-frames.ts.
 *
 * Memory: an idle waiter costs what ws and the TCP socket need and little more. Its job and its
 * heartbeat flag live on the socket object itself ({@link WaiterSocket}), the listeners are
 * shared functions (no closure per socket), a job with one waiter holds that socket rather than
 * a Set, and one heartbeat ({@link WaiterHub.sweep}) serves every socket instead of a timer each.
 */
import type { Duplex } from 'node:stream';
import { WebSocket } from 'ws';
import type { ImageFrame, PreviewFrame, StatusFrame } from '../contracts/ws-frames.ts';
import type { JobProgress, JobRecord } from './job-tracker.ts';
import { isTerminal, progressFraction } from './job-tracker.ts';

export type { StatusFrame };

/**
 * ws's WebSocket with what the hub keeps per waiter as two fields on it (ws builds its server
 * sockets from this class: `WebSocketServer({ WebSocket: WaiterSocket })`).
 */
export class WaiterSocket extends WebSocket {
  /** The job this socket follows ('' until it is added to the hub). */
  jobId = '';
  /** Whether it answered (or has not yet been sent) the last heartbeat ping. */
  alive = true;
  /** The queue position it was last told (-1: none), so an unchanged one is not sent again. */
  position = -1;
}

/**
 * The TCP socket under a ws socket (ws keeps it as `_socket`), corked while a job's frames are
 * written so that they leave in one `writev`: a 1 MiB image is ~16 fragments, each otherwise a
 * write call of its own (frame header and data).
 */
function corked(socket: WebSocket, write: () => void): void {
  const raw = (socket as unknown as { _socket?: Duplex | null })._socket ?? undefined;
  raw?.cork();
  try {
    write();
  } finally {
    raw?.uncork();
  }
}

/** Shared by every socket: no closure per socket. */
function onPong(this: WebSocket): void {
  (this as WaiterSocket).alive = true;
}

/** Sends job events to the sockets waiting on them. */
export class WaiterHub {
  /** One socket, or a Set of them when several follow the same job. */
  private readonly waiters = new Map<string, WaiterSocket | Set<WaiterSocket>>();
  private openCount = 0;
  private readonly onClose: (this: WebSocket) => void;

  private readonly info: { name: string; demo: boolean };

  constructor(info: { name: string; demo: boolean }) {
    this.info = info;
    const hub = this;
    this.onClose = function (this: WebSocket) {
      hub.remove(this as WaiterSocket);
    };
  }

  get openSockets(): number {
    return this.openCount;
  }

  /** Add a socket waiting on a job and send it what is known so far. */
  add(socket: WaiterSocket, record: JobRecord, position: number | undefined): void {
    // The record's own id string: the socket holds no copy of its own.
    const { jobId } = record;
    socket.jobId = jobId;
    socket.alive = true;
    const held = this.waiters.get(jobId);
    if (!held) this.waiters.set(jobId, socket);
    else if (held instanceof Set) held.add(socket);
    else this.waiters.set(jobId, new Set([held, socket]));
    this.openCount++;
    socket.on('close', this.onClose);
    socket.on('pong', onPong);
    this.sendRecord(socket, record, position);
  }

  private remove(socket: WaiterSocket): void {
    this.openCount--;
    const held = this.waiters.get(socket.jobId);
    if (held === socket) this.waiters.delete(socket.jobId);
    else if (held instanceof Set) {
      held.delete(socket);
      if (held.size === 0) this.waiters.delete(socket.jobId);
    }
  }

  /** The sockets following a job (a live view: do not add while iterating). */
  private socketsOf(jobId: string): Iterable<WaiterSocket> {
    const held = this.waiters.get(jobId);
    if (!held) return [];
    return held instanceof Set ? held : [held];
  }

  /**
   * One heartbeat for every socket (call it every `WS_HEARTBEAT_SECONDS`): a socket that did not
   * answer the previous sweep's ping is cut (the peer is gone without a close), the rest are
   * pinged again, and those following a job that `isIdle` are closed with 1001.
   */
  sweep(isIdle: (jobId: string) => boolean): void {
    for (const [jobId, held] of this.waiters) {
      const idle = isIdle(jobId);
      for (const socket of held instanceof Set ? held : [held]) {
        if (!socket.alive) {
          socket.terminate();
          continue;
        }
        socket.alive = false;
        socket.ping();
        if (idle) socket.close(1001, 'idle');
      }
    }
  }

  /** Close every socket (the relay is shutting down). */
  closeAll(): void {
    for (const held of this.waiters.values())
      for (const socket of held instanceof Set ? [...held] : [held]) socket.close();
  }

  hasWaiters(jobId: string): boolean {
    return this.waiters.has(jobId);
  }

  /** Broadcast a job's state to its waiters. */
  publish(record: JobRecord, position?: number): void {
    for (const socket of this.socketsOf(record.jobId)) this.sendRecord(socket, record, position);
  }

  /** Tell a generating job's waiters how far it has got (and show its preview, if it sent one). */
  publishProgress(record: JobRecord, progress: JobProgress): void {
    if (!this.waiters.has(record.jobId)) return;
    const status = JSON.stringify(this.progressFrame(record.jobId, progress));
    const preview = progress.preview ? this.previewFrame(record.jobId, progress) : undefined;
    for (const socket of this.socketsOf(record.jobId)) {
      if (socket.readyState !== socket.OPEN) continue;
      const shown = progress.preview;
      if (preview && shown)
        corked(socket, () => {
          socket.send(status);
          socket.send(preview);
          socket.send(shown.bytes, { binary: true });
        });
      else socket.send(status);
    }
  }

  private progressFrame(jobId: string, progress: JobProgress): StatusFrame {
    return {
      ...this.statusBase(jobId, 'generating'),
      progress: Math.round(progressFraction(progress) * 1000) / 1000,
      step: progress.step,
      steps: progress.steps,
    };
  }

  private previewFrame(jobId: string, progress: JobProgress): string | undefined {
    const image = progress.preview;
    if (!image) return undefined;
    const frame: PreviewFrame = {
      type: 'preview',
      jobId,
      contentType: image.contentType,
      bytes: image.size,
    };
    if (image.info.width !== undefined) frame.width = image.info.width;
    if (image.info.height !== undefined) frame.height = image.info.height;
    return JSON.stringify(frame);
  }

  /**
   * Tell every waiter of a queued job how many are ahead now, if that moved since it was last
   * told: one pass over the waiters (never over the queue, whose jobs mostly have none), one
   * frame per socket whose position changed (a job that leaves from behind moves nobody ahead
   * of it). `positionOf` is the job's position, undefined once it is not queued.
   */
  publishPositions(positionOf: (jobId: string) => number | undefined): void {
    for (const [jobId, held] of this.waiters) {
      const position = positionOf(jobId);
      if (position === undefined) continue;
      if (held instanceof Set) {
        let frame: string | undefined;
        for (const socket of held) frame = this.tellPosition(socket, jobId, position, frame);
      } else this.tellPosition(held, jobId, position, undefined);
    }
  }

  /** Send `position` unless the socket knows it; returns the frame, built once per job. */
  private tellPosition(
    socket: WaiterSocket,
    jobId: string,
    position: number,
    frame: string | undefined,
  ): string | undefined {
    if (socket.position === position || socket.readyState !== socket.OPEN) return frame;
    const text = frame ?? JSON.stringify({ ...this.statusBase(jobId, 'queued'), position });
    socket.position = position;
    socket.send(text);
    return text;
  }

  private statusBase(jobId: string, state: JobRecord['state']): StatusFrame {
    return { type: 'status', jobId, state, generator: this.info.name, demo: this.info.demo };
  }

  private sendRecord(socket: WaiterSocket, record: JobRecord, position: number | undefined): void {
    if (socket.readyState !== socket.OPEN) return;
    corked(socket, () => this.writeRecord(socket, record, position));
  }

  private writeRecord(socket: WaiterSocket, record: JobRecord, position: number | undefined): void {
    if (record.state === 'generating' && record.progress) {
      // A late joiner sees how far it has got, and the latest preview.
      socket.send(JSON.stringify(this.progressFrame(record.jobId, record.progress)));
      const preview = this.previewFrame(record.jobId, record.progress);
      if (preview && record.progress.preview) {
        socket.send(preview);
        socket.send(record.progress.preview.bytes, { binary: true });
      }
      return;
    }
    const frame: StatusFrame = this.statusBase(record.jobId, record.state);
    if (position !== undefined) {
      frame.position = position;
      socket.position = position;
    }
    if (record.error) frame.error = record.error;
    if (record.state === 'done' && !record.images) {
      // Finished, but the image left the buffer: say so rather than hang.
      frame.state = 'expired';
      frame.error = {
        code: 'JOB_EXPIRED',
        message: 'the image is no longer held; generate it again',
      };
    }
    socket.send(JSON.stringify(frame));
    if (record.state === 'done' && record.images) {
      const count = record.images.length;
      record.images.forEach((image, index) => {
        const frame: ImageFrame = {
          type: 'image',
          jobId: record.jobId,
          index,
          count,
          task: record.task ?? 'generate',
          contentType: image.contentType,
          bytes: image.size,
          seed: image.info.seed ?? record.seed,
          width: image.info.width ?? record.width,
          height: image.info.height ?? record.height,
          generationMs: record.generationMs,
          ...(record.spoilers?.[index] ? { spoiler: true as const } : {}),
          ...(record.withheld ? { withheld: record.withheld } : {}),
        };
        socket.send(JSON.stringify(frame));
        // One binary message, sent as the chunks it arrived in (fragments): no copy of the image.
        const { chunks } = image;
        chunks.forEach((chunk, i) => {
          socket.send(chunk, { binary: true, fin: i === chunks.length - 1 });
        });
      });
    }
    if (isTerminal(record.state)) socket.close(1000, record.state);
  }
}
