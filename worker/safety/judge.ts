/**
 * Judging a job's images before anything leaves the worker: each image's classifier score,
 * combined with the generator's own when it gave one (the larger wins), against the job's policy.
 */
import {
  combineScores,
  decideSafety,
  type SafetyPolicy,
  type SafetyVerdict,
} from '../../contracts/safety.ts';
import type { ImageClassifier } from './classifier.ts';

/** An image as the judge sees it. */
export interface JudgedImage {
  bytes: Buffer;
  /** The generator's own safety score (0–1), when it returned one. */
  safetyScore?: number | undefined;
}

/**
 * One verdict per image, in order. With safety `off` nothing is classified (the model is never
 * loaded). A classifier failure throws (`SAFETY_CHECK_FAILED`): an image that could not be
 * judged is not delivered.
 */
export async function judgeImages(
  images: readonly JudgedImage[],
  policy: SafetyPolicy,
  classifier: ImageClassifier,
): Promise<SafetyVerdict[]> {
  const base = {
    mode: policy.mode,
    threshold: policy.threshold,
    ...(policy.reviewChannelId === undefined ? {} : { reviewChannelId: policy.reviewChannelId }),
  };
  if (policy.mode === 'off') return images.map(() => ({ action: 'deliver', ...base }));
  const verdicts: SafetyVerdict[] = [];
  for (const image of images) {
    const { score: classifierScore } = await classifier.classify(image.bytes);
    const generatorScore = image.safetyScore;
    const score = combineScores(classifierScore, generatorScore);
    verdicts.push({
      action: decideSafety(policy, score),
      ...base,
      ...(score === undefined ? {} : { score }),
      classifierScore,
      classifier: classifier.name,
      ...(generatorScore === undefined ? {} : { generatorScore }),
    });
  }
  return verdicts;
}
