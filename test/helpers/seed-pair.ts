/** A pair of demo images the real safety classifier scores apart, for tests of mixed verdicts. */

import { DemoGenerator } from '../../worker/generators/demo.ts';
import type { ImageClassifier } from '../../worker/safety/classifier.ts';

/** A base seed whose two images score apart, a threshold between them, and which one it flags. */
export interface SeedPair {
  /** The job's base seed: its images are `seed` and `seed + 1`. */
  seed: number;
  /** SAFETY_THRESHOLD between the two real scores (as configuration text). */
  threshold: string;
  /** The seed of the image the threshold flags (the higher score). */
  flaggedSeed: number;
}

/** Find a base seed whose two demo images of `prompt` at `size`² the classifier scores apart. */
export async function seedPairScoredApart(
  classifier: ImageClassifier,
  prompt: string,
  size: number,
): Promise<SeedPair> {
  const demo = new DemoGenerator();
  for (let seed = 1; seed < 50; seed += 2) {
    const images = await demo.generate(
      { task: 'generate', prompt, width: size, height: size, seeds: [seed, seed + 1], steps: 4 },
      { signal: new AbortController().signal },
    );
    const [a, b] = await Promise.all(images.map((i) => classifier.classify(i.bytes)));
    if (Math.abs(a!.score - b!.score) > 0.002)
      return {
        seed,
        threshold: ((a!.score + b!.score) / 2).toFixed(6),
        flaggedSeed: a!.score > b!.score ? seed : seed + 1,
      };
  }
  throw new Error('no seed pair with different scores');
}
