/**
 * The WebSocket hub: waiters per job. Text frames carry status (with progress while
 * generating); a preview goes out as a `preview` frame followed by ONE binary frame, and each
 * finished image as one JSON `image` frame (with its `index` and the job's `count`) followed by
 * ONE binary frame holding its bytes, in order. A job of one image is exactly the single-image
 * exchange. The frame shapes are the contract in contracts/ws-frames.ts.
 */
import type { WebSocket } from 'ws';
import type { ImageFrame, PreviewFrame, StatusFrame } from '../contracts/ws-frames.ts';
import type { JobProgress, JobRecord } from './job-tracker.ts';
import { isTerminal, progressFraction } from './job-tracker.ts';

export type { StatusFrame };

/** Sends job events to the sockets waiting on them. */
export class WaiterHub {
  private readonly waiters = new Map<string, Set<WebSocket>>();
  private openCount = 0;

  private readonly info: { name: string; demo: boolean };

  constructor(info: { name: string; demo: boolean }) {
    this.info = info;
  }

  get openSockets(): number {
    return this.openCount;
  }

  /** Add a socket waiting on a job and send it what is known so far. */
  add(jobId: string, socket: WebSocket, record: JobRecord, position: number | undefined): void {
    let set = this.waiters.get(jobId);
    if (!set) {
      set = new Set();
      this.waiters.set(jobId, set);
    }
    set.add(socket);
    this.openCount++;
    socket.once('close', () => {
      this.openCount--;
      set.delete(socket);
      if (set.size === 0 && this.waiters.get(jobId) === set) this.waiters.delete(jobId);
    });
    this.sendRecord(socket, record, position);
  }

  hasWaiters(jobId: string): boolean {
    return (this.waiters.get(jobId)?.size ?? 0) > 0;
  }

  /** Broadcast a job's state to its waiters. */
  publish(record: JobRecord, position?: number): void {
    const set = this.waiters.get(record.jobId);
    if (!set) return;
    for (const socket of set) this.sendRecord(socket, record, position);
  }

  /** Tell a generating job's waiters how far it has got (and show its preview, if it sent one). */
  publishProgress(record: JobRecord, progress: JobProgress): void {
    const set = this.waiters.get(record.jobId);
    if (!set) return;
    const status = JSON.stringify(this.progressFrame(record.jobId, progress));
    const preview = progress.preview ? this.previewFrame(record.jobId, progress) : undefined;
    for (const socket of set) {
      if (socket.readyState !== socket.OPEN) continue;
      socket.send(status);
      if (preview && progress.preview) {
        socket.send(preview);
        socket.send(progress.preview.bytes, { binary: true });
      }
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

  /** Tell a queued job's waiters how many are ahead now. */
  publishPosition(jobId: string, position: number): void {
    const set = this.waiters.get(jobId);
    if (!set) return;
    const frame = JSON.stringify({ ...this.statusBase(jobId, 'queued'), position });
    for (const socket of set) socket.send(frame);
  }

  private statusBase(jobId: string, state: JobRecord['state']): StatusFrame {
    return { type: 'status', jobId, state, generator: this.info.name, demo: this.info.demo };
  }

  private sendRecord(socket: WebSocket, record: JobRecord, position: number | undefined): void {
    if (socket.readyState !== socket.OPEN) return;
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
    if (position !== undefined) frame.position = position;
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
