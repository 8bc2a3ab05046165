import sharp from 'sharp';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../contracts/config.ts';
import { isRetryable } from '../../contracts/errors.ts';
import type { GenerateProgress } from '../../worker/generator.ts';
import { ComfyUIGenerator, type ComfyUIOptions } from '../../worker/generators/comfyui.ts';
import {
  checkWorkflow,
  DEFAULT_WORKFLOWS,
  loadWorkflow,
} from '../../worker/generators/comfyui-workflow.ts';
import { generatorFromConfig } from '../../worker/generators/index.ts';
import { type FakeComfyUI, startFakeComfyUI } from '../fakes/comfyui.ts';
import { failure, generateRequest, generateThroughPipeline, live } from '../helpers/generator.ts';
import { pngOf } from '../helpers/images.ts';

const request = generateRequest(128, 64);

describe('ComfyUI generator against a local fake of its HTTP and WebSocket API', () => {
  let fake: FakeComfyUI;
  let input: Buffer;
  const workflows = {
    generate: loadWorkflow(DEFAULT_WORKFLOWS.generate, ['prompt', 'seed']),
    vary: loadWorkflow(DEFAULT_WORKFLOWS.vary, ['prompt', 'seed', 'image', 'strength']),
  };
  const make = (overrides: Partial<ComfyUIOptions> = {}) =>
    new ComfyUIGenerator({
      name: 'comfy',
      url: fake.url,
      model: 'flux1-schnell-fp8.safetensors',
      workflows: { ...workflows, upscale: workflows.vary },
      timeoutMs: 10_000,
      maxBytes: 1024 * 1024,
      ...overrides,
    });

  beforeAll(async () => {
    fake = await startFakeComfyUI();
    input = await pngOf(64, 32, { r: 0x33, g: 0x66, b: 0x99 });
  });
  afterAll(async () => {
    await fake?.close();
  });
  beforeEach(() => {
    fake.mode = 'ok';
    fake.stepMs = 5;
    fake.failSeed = undefined;
    fake.queueAnswerMs = 0;
    fake.prompts.length = 0;
    fake.interrupts.length = 0;
    fake.deletes.length = 0;
  });

  it('queues the bundled Flux schnell workflow with the placeholders filled in, typed', async () => {
    const [image] = await make().generate(request, { signal: live() });
    expect(image!.contentType).toBe('image/png');
    expect(image!.seed).toBe(99);
    expect([image!.width, image!.height]).toEqual([128, 64]);
    const graph = fake.prompts[0]!.graph;
    expect(graph['1']!.inputs.ckpt_name).toBe('flux1-schnell-fp8.safetensors');
    expect(graph['2']!.inputs.text).toBe(request.prompt);
    expect(graph['4']!.inputs).toEqual({ width: 128, height: 64, batch_size: 1 });
    expect(graph['5']!.inputs).toMatchObject({ seed: 99, steps: 4, cfg: 1, scheduler: 'simple' });
    expect(fake.prompts[0]!.clientId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('count: one prompt per seed, each image with its own seed', async () => {
    const images = await make().generate({ ...request, seeds: [7, 8, 9] }, { signal: live() });
    expect(images.map((i) => i.seed)).toEqual([7, 8, 9]);
    expect(fake.prompts.map((p) => p.graph['5']!.inputs.seed)).toEqual([7, 8, 9]);
    // Distinct images, in order (the fake colours each by its seed).
    const reds = await Promise.all(
      images.map(async (i) => (await sharp(i.bytes).raw().toBuffer())[0]),
    );
    expect(reds).toEqual([7, 8, 9]);
  });

  it('vary: uploads the input with /upload/image and runs image-to-image at the strength', async () => {
    const [image] = await make().generate(
      {
        ...request,
        task: 'vary',
        width: 64,
        height: 32,
        input: { bytes: input, contentType: 'image/png', width: 64, height: 32 },
        strength: 0.35,
      },
      { signal: live() },
    );
    expect([image!.width, image!.height]).toEqual([64, 32]);
    const graph = fake.prompts[0]!.graph;
    const uploaded = graph['8']!.inputs.image as string;
    expect(uploaded).toMatch(/^imagine\/imagine-.*\.png$/);
    expect(fake.uploads.get(uploaded)?.equals(input)).toBe(true);
    expect(graph['5']!.inputs.denoise).toBe(0.35);
  });

  it('upscale: the image-to-image workflow at twice the size', async () => {
    const [image] = await make().generate(
      {
        ...request,
        task: 'upscale',
        width: 128,
        height: 64,
        input: { bytes: input, contentType: 'image/png', width: 64, height: 32 },
        strength: 0.3,
      },
      { signal: live() },
    );
    expect([image!.width, image!.height]).toEqual([128, 64]);
    expect(fake.prompts[0]!.graph['9']!.inputs).toMatchObject({ width: 128, height: 64 });
  });

  it('progress from the WebSocket: steps to n of n over every image, with previews', async () => {
    const seen: GenerateProgress[] = [];
    await make().generate(
      { ...request, seeds: [1, 2], steps: 3 },
      { signal: live(), onProgress: (p) => seen.push(p) },
    );
    expect(seen.map((p) => p.step).filter((_, i) => i % 2 === 0)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(seen.every((p) => p.steps === 6)).toBe(true);
    expect(seen.some((p) => p.preview?.contentType === 'image/png')).toBe(true);
  });

  it('cancel: deletes our queued prompts and interrupts the running one', async () => {
    fake.stepMs = 100;
    const ac = new AbortController();
    const pending = make().generate(
      { ...request, seeds: [1, 2, 3], steps: 50 },
      { signal: ac.signal },
    );
    await expect.poll(() => fake.prompts.length).toBe(3);
    await new Promise((r) => setTimeout(r, 150));
    ac.abort(new Error('cancelled by user'));
    await expect(pending).rejects.toThrow('cancelled by user');
    const ids = fake.prompts.map((p) => p.id);
    expect(fake.deletes.flat().sort()).toEqual([...ids].sort());
    expect(fake.interrupts).toEqual([{ prompt_id: ids[0] }]);
  });

  it('cancel while POST /prompt is still answering: that prompt is taken off the queue too, not left to run', async () => {
    fake.stepMs = 100;
    fake.queueAnswerMs = 300;
    const ac = new AbortController();
    const pending = make().generate(
      { ...request, seeds: [1, 2], steps: 50 },
      { signal: ac.signal },
    );
    // ComfyUI has the first prompt queued; its prompt_id is still on the way back.
    await expect.poll(() => fake.prompts.length).toBe(1);
    ac.abort(new Error('cancelled by user'));
    await expect(pending).rejects.toThrow('cancelled by user');
    const ids = fake.prompts.map((p) => p.id);
    expect(ids).toHaveLength(1);
    expect(fake.deletes.flat()).toEqual(ids);
  });

  it('one image failing takes the call’s other prompts off the queue instead of running them', async () => {
    fake.stepMs = 20;
    fake.failSeed = 1;
    const finishedBefore = fake.finished;
    const err = await failure(
      make().generate({ ...request, seeds: [1, 2, 3] }, { signal: live() }),
    );
    expect(err.code).toBe('GENERATION_FAILED');
    const [first, second, third] = fake.prompts.map((p) => p.id);
    expect(fake.deletes.flat().sort()).toEqual([second, third].sort());
    // The failed one is over: never interrupted (the next may have started, and is).
    expect(fake.interrupts.map((i) => i.prompt_id)).not.toContain(first);
    await new Promise((r) => setTimeout(r, 200));
    expect(fake.finished).toBe(finishedBefore);
  });

  it('a workflow ComfyUI rejects (unknown checkpoint) → GENERATOR_REJECTED with its node error, not retried', async () => {
    const err = await failure(
      make({ model: 'missing.safetensors' }).generate(request, { signal: live() }),
    );
    expect(err.code).toBe('GENERATOR_REJECTED');
    expect(err.message).toContain('Value not in list');
    expect(err.message).toContain('CheckpointLoaderSimple');
    expect(isRetryable(err)).toBe(false);
  });

  it('a node ComfyUI does not have → GENERATOR_REJECTED', async () => {
    const custom = checkWorkflow(
      {
        '1': { class_type: 'FancyCustomNode', inputs: { text: '{{prompt}}', seed: '{{seed}}' } },
        '2': { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 'x' } },
      },
      'custom.json',
      ['prompt', 'seed'],
    );
    const err = await failure(
      make({ workflows: { generate: custom } }).generate(request, { signal: live() }),
    );
    expect(err.code).toBe('GENERATOR_REJECTED');
    expect(err.message).toContain('FancyCustomNode does not exist');
  });

  it('out of memory while running → GENERATOR_UNAVAILABLE (retryable); other node errors → GENERATION_FAILED', async () => {
    fake.mode = 'oom';
    const oom = await failure(make().generate(request, { signal: live() }));
    expect(oom.code).toBe('GENERATOR_UNAVAILABLE');
    expect(isRetryable(oom)).toBe(true);
    fake.mode = 'node-error';
    const broken = await failure(make().generate(request, { signal: live() }));
    expect(broken.code).toBe('GENERATION_FAILED');
    expect(broken.message).toContain('mat1 and mat2');
    expect(isRetryable(broken)).toBe(false);
  });

  it('the WebSocket dropping mid-job → GENERATOR_UNAVAILABLE; a 500 on /prompt → GENERATOR_UNAVAILABLE', async () => {
    fake.mode = 'ws-drop';
    expect((await failure(make().generate(request, { signal: live() }))).code).toBe(
      'GENERATOR_UNAVAILABLE',
    );
    fake.mode = 'prompt-500';
    expect((await failure(make().generate(request, { signal: live() }))).code).toBe(
      'GENERATOR_UNAVAILABLE',
    );
  });

  it('never started in time → GENERATOR_TIMEOUT, and the prompt is taken off the queue', async () => {
    fake.mode = 'hang';
    const err = await failure(make({ timeoutMs: 300 }).generate(request, { signal: live() }));
    expect(err.code).toBe('GENERATOR_TIMEOUT');
    expect(fake.deletes.flat()).toEqual([fake.prompts[0]!.id]);
    fake.mode = 'ok';
  });

  it('an image over the byte cap → GENERATOR_TOO_LARGE', async () => {
    const err = await failure(
      make({ maxBytes: 200 }).generate({ ...request, width: 512, height: 512 }, { signal: live() }),
    );
    expect(err.code).toBe('GENERATOR_TOO_LARGE');
  });

  it('behind an authenticating proxy: COMFYUI_AUTH is sent on HTTP and the WebSocket; a wrong one → GENERATOR_AUTH', async () => {
    fake.requireAuth = 'Bearer comfy-secret';
    try {
      const err = await failure(
        make({ auth: 'Bearer wrong' }).generate(request, { signal: live() }),
      );
      expect(err.code).toBe('GENERATOR_AUTH');
      expect(isRetryable(err)).toBe(false);
      const [image] = await make({ auth: 'Bearer comfy-secret' }).generate(request, {
        signal: live(),
      });
      expect(image!.contentType).toBe('image/png');
    } finally {
      fake.requireAuth = undefined;
    }
  });

  it('connection refused → GENERATOR_UNAVAILABLE', async () => {
    const err = await failure(
      make({ url: 'http://127.0.0.1:9' }).generate(request, { signal: live() }),
    );
    expect(err.code).toBe('GENERATOR_UNAVAILABLE');
  });

  it('workflows are checked at start-up: UI format, unknown placeholders, missing ones', () => {
    expect(() => checkWorkflow({ nodes: [], links: [] }, 'ui.json', ['prompt'])).toThrow(
      /class_type/,
    );
    expect(() =>
      checkWorkflow({ '1': { class_type: 'X', inputs: { t: '{{promt}}' } } }, 'typo.json', []),
    ).toThrow(/unknown placeholder \{\{promt\}\}/);
    expect(() =>
      checkWorkflow({ '1': { class_type: 'X', inputs: { t: '{{prompt}}' } } }, 'noseed.json', [
        'prompt',
        'seed',
      ]),
    ).toThrow(/needs a \{\{seed\}\}/);
  });

  it('through the whole pipeline: GENERATOR=comfyui with the bundled workflows', async () => {
    await generateThroughPipeline(
      { GENERATOR: 'comfyui', COMFYUI_URL: fake.url },
      { width: 256, height: 128, seed: 5 },
    );
    expect(fake.prompts.at(-1)!.graph['5']!.inputs.seed).toBe(5);
  });

  it('a workflow file that is not there stops start-up, naming the variable', async () => {
    const config = loadConfig({
      GENERATOR: 'comfyui',
      COMFYUI_URL: fake.url,
      COMFYUI_WORKFLOW: 'no/such/workflow.json',
    });
    await expect(generatorFromConfig(config)).rejects.toThrow(
      /^COMFYUI_WORKFLOW: .*cannot be read/,
    );
  });
});
