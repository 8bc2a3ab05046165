/**
 * The demo generator, made to report progress the way a real backend does: step 1 of 4 at once,
 * then it waits (abortably) until the test releases it, then steps 2–4 and the images. It
 * records whether a call was aborted (a cancelled job's generator call must be).
 */
import type {
  GeneratedImage,
  GenerateOptions,
  GenerateRequest,
  Generator,
} from '../../worker/generator.ts';
import { DemoGenerator } from '../../worker/generators/demo.ts';

/** See the module comment. */
export class SteppedGenerator implements Generator {
  readonly name = 'demo';
  private readonly inner = new DemoGenerator();
  private gate = Promise.withResolvers<void>();
  /** Calls started, and how many of them were aborted. */
  started = 0;
  aborted = 0;

  /** Let held and future calls run to the end. */
  release(): void {
    this.gate.resolve();
  }

  /** Hold calls after their first step again. */
  hold(): void {
    this.gate = Promise.withResolvers<void>();
  }

  async generate(req: GenerateRequest, opts: GenerateOptions): Promise<GeneratedImage[]> {
    this.started += 1;
    const { signal, onProgress } = opts;
    onProgress?.({ step: 1, steps: 4 });
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        this.aborted += 1;
        reject(signal.reason ?? new Error('aborted'));
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      void this.gate.promise.then(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      });
    });
    for (let step = 2; step <= 4; step++) onProgress?.({ step, steps: 4 });
    return this.inner.generate(req, { signal });
  }
}
