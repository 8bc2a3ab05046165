/**
 * Web uploads held in relay memory for a short while: the page sends its own copy of an image
 * (a dropped file, or a result it is showing) and gets a signed link a job can carry. Nothing
 * touches disk; uploads leave after UPLOAD_TTL_SECONDS, oldest first beyond UPLOAD_BUFFER_BYTES.
 */
import { randomBytes } from 'node:crypto';
import type { CheckedImage } from '../contracts/image-check.ts';

/** One upload. */
export interface Upload extends CheckedImage {
  expiresAt: number;
}

/** Options of {@link UploadStore}. */
export interface UploadStoreOptions {
  ttlMs: number;
  maxBytes: number;
  now?: () => number;
}

/** Uploads by id, in memory. */
export class UploadStore {
  private readonly uploads = new Map<string, Upload>();
  private total = 0;
  private readonly now: () => number;
  private readonly opts: UploadStoreOptions;

  constructor(opts: UploadStoreOptions) {
    this.opts = opts;
    this.now = opts.now ?? Date.now;
  }

  /** Bytes held. */
  get bytes(): number {
    return this.total;
  }

  /** Keep an image; returns its id and expiry, or undefined when it cannot fit at all. */
  put(image: CheckedImage): { id: string; expiresAt: number } | undefined {
    this.sweep();
    const size = image.bytes.length;
    if (size > this.opts.maxBytes) return undefined;
    for (const [id] of this.uploads) {
      if (this.total + size <= this.opts.maxBytes) break;
      this.drop(id);
    }
    const id = randomBytes(18).toString('base64url');
    const expiresAt = this.now() + this.opts.ttlMs;
    this.uploads.set(id, { ...image, expiresAt });
    this.total += size;
    return { id, expiresAt };
  }

  /** An upload still held, or undefined. */
  get(id: string): Upload | undefined {
    const upload = this.uploads.get(id);
    if (upload && upload.expiresAt < this.now()) {
      this.drop(id);
      return undefined;
    }
    return upload;
  }

  /** Drop expired uploads. */
  sweep(): void {
    const now = this.now();
    for (const [id, upload] of this.uploads) if (upload.expiresAt < now) this.drop(id);
  }

  private drop(id: string): void {
    const upload = this.uploads.get(id);
    if (!upload) return;
    this.uploads.delete(id);
    this.total -= upload.bytes.length;
  }
}
