/**
 * The real classifier (NSFWJS MobileNetV2 on tfjs-wasm, weights from the npm package) on the
 * demo generator's own images: they must score safe under the default threshold.
 */
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { DEFAULT_SAFETY_THRESHOLD, decideSafety } from '../../contracts/safety.ts';
import { DemoGenerator } from '../../worker/generators/demo.ts';
import { createNsfwClassifier, NSFW_CLASSES } from '../../worker/safety/classifier.ts';

const signal = new AbortController().signal;
const classifier = createNsfwClassifier();

describe('the NSFWJS classifier', () => {
  it('loads nothing until asked', () => {
    const lazy = createNsfwClassifier();
    expect(lazy.loaded).toBe(false);
    expect(lazy.name).toBe('nsfwjs/mobilenet_v2@wasm');
  });

  it('scores demo images (square and wide, several prompts) safe under the default threshold', async () => {
    const demo = new DemoGenerator();
    const cases = [
      { prompt: 'a fox in space', seeds: [1, 2, 3, 4], width: 1024, height: 1024 },
      { prompt: 'a lighthouse at dusk', seeds: [42], width: 1344, height: 768 },
      { prompt: 'portrait of a cat', seeds: [7], width: 768, height: 1344 },
      { prompt: 'sunset over the sea', seeds: [2 ** 31], width: 512, height: 512 },
    ];
    const images = [];
    for (const c of cases)
      images.push(...(await demo.generate({ task: 'generate', ...c, steps: 4 }, { signal })));
    expect(images).toHaveLength(7);
    for (const image of images) {
      const result = await classifier.classify(image.bytes);
      const total = NSFW_CLASSES.reduce((sum, k) => sum + result.classes[k], 0);
      expect(total).toBeCloseTo(1, 2);
      expect(result.score).toBeCloseTo(
        result.classes.Porn + result.classes.Hentai + result.classes.Sexy,
        6,
      );
      expect(result.score).toBeLessThan(DEFAULT_SAFETY_THRESHOLD);
      expect(
        decideSafety({ mode: 'block', threshold: DEFAULT_SAFETY_THRESHOLD }, result.score),
      ).toBe('deliver');
    }
    expect(classifier.loaded).toBe(true);
  });

  it('judges the same image the same way every time', async () => {
    const [image] = await new DemoGenerator().generate(
      { task: 'generate', prompt: 'repeat', seeds: [3], width: 256, height: 256, steps: 4 },
      { signal },
    );
    const a = await classifier.classify(image!.bytes);
    const b = await classifier.classify(image!.bytes);
    expect(b.classes).toEqual(a.classes);
  });

  it('reads JPEG and WebP with alpha too', async () => {
    const rgba = sharp({
      create: {
        width: 300,
        height: 200,
        channels: 4,
        background: { r: 30, g: 90, b: 160, alpha: 0.5 },
      },
    });
    for (const bytes of [
      await rgba.clone().jpeg().toBuffer(),
      await rgba.clone().webp().toBuffer(),
    ]) {
      const result = await classifier.classify(bytes);
      expect(result.score).toBeGreaterThanOrEqual(0);
      expect(result.score).toBeLessThanOrEqual(1);
    }
  });

  it('bytes that are not an image fail with SAFETY_CHECK_FAILED, not a crash', async () => {
    await expect(classifier.classify(Buffer.from('not an image at all'))).rejects.toMatchObject({
      code: 'SAFETY_CHECK_FAILED',
    });
  });
});
