/**
 * The per-scope model tests' set-up (Discord and Slack): two A1111 fakes behind GENERATORS, one
 * serving flux1-schnell and one sdxl-base and sd-turbo, MODELS listing all three, and a data
 * directory for the settings store.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type FakeA1111, startFakeA1111 } from '../fakes/a1111.ts';

/** The two backends, their configuration and their txt2img calls. */
export interface ModelBoxes {
  flux: FakeA1111;
  sdxl: FakeA1111;
  /** DATA_DIR, MODELS and GENERATORS for `startTestImagine`. */
  env: Record<string, string>;
  /** The txt2img requests a backend saw. */
  txt2img(box: FakeA1111): FakeA1111['seen'];
  close(): Promise<void>;
}

/** Start both backends. */
export async function startModelBoxes(name: string): Promise<ModelBoxes> {
  const dataDir = mkdtempSync(join(tmpdir(), `imagine-${name}-`));
  const flux = await startFakeA1111();
  const sdxl = await startFakeA1111();
  return {
    flux,
    sdxl,
    env: {
      DATA_DIR: dataDir,
      MODELS: 'flux1-schnell, sdxl-base, sd-turbo',
      GENERATORS: JSON.stringify([
        { name: 'flux-box', type: 'a1111', url: flux.url, models: ['flux1-schnell'] },
        { name: 'sdxl-box', type: 'a1111', url: sdxl.url, models: ['sdxl-base', 'sd-turbo'] },
      ]),
    },
    txt2img: (box) => box.seen.filter((s) => s.path === '/sdapi/v1/txt2img'),
    async close() {
      await flux.close();
      await sdxl.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
