/** The generator port: turn a prompt and parameters into image bytes. */
import type { ImageType } from '../contracts/image-types.ts';

/** What a generator is asked for. */
export interface GenerateRequest {
  prompt: string;
  width: number;
  height: number;
  seed: number;
  steps: number;
}

/** What a generator returns. */
export interface GeneratedImage {
  bytes: Buffer;
  contentType: ImageType;
  seed: number;
  width: number;
  height: number;
}

/** Anything that makes images. Errors are `ImagineError`s with `GENERATOR_*` codes. */
export interface Generator {
  /** Short name shown to users ("demo", "modal", "http"). */
  readonly name: string;
  generate(request: GenerateRequest, options: { signal: AbortSignal }): Promise<GeneratedImage>;
}
