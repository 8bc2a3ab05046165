import { describe, expect, it } from 'vitest';
import {
  ImagineRequestSchema,
  imageSeeds,
  JobSchema,
  jobSeeds,
  resolveRequest,
  UPSCALE_STRENGTH,
  VARY_STRENGTHS,
} from '../../contracts/job.ts';
import { PushMetaSchema } from '../../contracts/push.ts';
import { parseImagineRequest } from '../../submit/submit.ts';

const jobId = 'a'.repeat(24);
const oldJob = {
  v: 1,
  jobId,
  prompt: 'a fox',
  params: { width: 1024, height: 1024, seed: 7, steps: 4 },
  origin: { platform: 'web' },
  createdAt: 1,
  expiresAt: 2,
};
const discordUrl = 'https://cdn.discordapp.com/attachments/1/2/imagine-7.png?ex=1&is=2&hm=3';

const message = (raw: unknown) => {
  try {
    parseImagineRequest(raw);
    return 'accepted';
  } catch (err) {
    return (err as Error).message;
  }
};

describe('job contract: tasks, counts, seeds, input references', () => {
  it('a job queued before the creative loop is still valid: one generated image', () => {
    const job = JobSchema.parse(oldJob);
    expect(job.task).toBe('generate');
    expect(job.count).toBe(1);
    expect(jobSeeds(job)).toEqual([7]);
  });

  it('image i has seed (base + i) mod 2^32, so each can be made again alone', () => {
    expect(imageSeeds(10, 4)).toEqual([10, 11, 12, 13]);
    expect(imageSeeds(2 ** 32 - 2, 4)).toEqual([2 ** 32 - 2, 2 ** 32 - 1, 0, 1]);
  });

  it('a vary or upscale without an input image, or an upscale of 4, is no job', () => {
    const bad = [
      { ...oldJob, task: 'vary', count: 4, strength: 0.5 },
      {
        ...oldJob,
        task: 'upscale',
        count: 4,
        strength: 0.3,
        input: { image: { kind: 'url', url: discordUrl } },
      },
      { ...oldJob, task: 'generate', input: { image: { kind: 'url', url: discordUrl } } },
      { ...oldJob, count: 5 },
      { ...oldJob, params: { ...oldJob.params, width: 4096 } },
    ];
    for (const job of bad) expect(JobSchema.safeParse(job).success).toBe(false);
    expect(
      JobSchema.safeParse({
        ...oldJob,
        task: 'upscale',
        params: { ...oldJob.params, width: 2048, height: 2048 },
        strength: UPSCALE_STRENGTH,
        input: {
          image: { kind: 'slack-file', fileId: 'F0123ABCD' },
          index: 1,
          width: 1024,
          height: 1024,
        },
      }).success,
    ).toBe(true);
  });

  it('requests resolve: count defaults to 4, an input means vary, strength presets', () => {
    const gen = resolveRequest(ImagineRequestSchema.parse({ prompt: 'x', seed: 3 }), { steps: 4 });
    expect(gen).toMatchObject({ task: 'generate', count: 4, params: { seed: 3, width: 1024 } });
    expect(gen.strength).toBeUndefined();
    const input = { image: { kind: 'url', url: discordUrl }, width: 1344, height: 768, seed: 9 };
    const vary = resolveRequest(
      ImagineRequestSchema.parse({ prompt: 'x', input, strength: 'subtle' }),
      { steps: 4, count: 2 },
    );
    expect(vary).toMatchObject({ task: 'vary', count: 2, strength: VARY_STRENGTHS.subtle });
    expect(vary.params).toMatchObject({ width: 1344, height: 768 });
    const strong = resolveRequest(ImagineRequestSchema.parse({ prompt: 'x', input }), { steps: 4 });
    expect(strong.strength).toBe(VARY_STRENGTHS.strong);
    const up = resolveRequest(ImagineRequestSchema.parse({ prompt: 'x', task: 'upscale', input }), {
      steps: 4,
    });
    expect(up).toMatchObject({ task: 'upscale', count: 1, strength: UPSCALE_STRENGTH });
    expect(up.params).toMatchObject({ width: 2688, height: 1536, seed: 9 });
    // A huge photo is varied at no more than 2048 a side, aspect kept, multiples of 16.
    const photo = resolveRequest(
      ImagineRequestSchema.parse({ prompt: 'x', input: { ...input, width: 4000, height: 3000 } }),
      { steps: 4 },
    );
    expect(photo.params).toMatchObject({ width: 2048, height: 1536 });
  });

  it('bad combinations get a message that says what is wrong', () => {
    const input = { image: { kind: 'url', url: discordUrl }, width: 1024, height: 1024 };
    expect(message({ prompt: 'x', count: 5 })).toBe('count must be an integer from 1 to 4');
    expect(message({ prompt: 'x', task: 'vary' })).toBe('task "vary" needs an input image');
    expect(message({ prompt: 'x', task: 'generate', input })).toMatch(/use task "vary"/);
    expect(message({ prompt: 'x', task: 'upscale', input, count: 2 })).toMatch(
      /an upscale makes one image/,
    );
    expect(message({ prompt: 'x', strength: 'wild', input })).toMatch(/strength must be "subtle"/);
    expect(message({ prompt: 'x', strength: 0.5 })).toBe('strength applies to a vary only');
    expect(message({ prompt: 'x', task: 'upscale', input: { image: input.image } })).toMatch(
      /needs its input's input.width/,
    );
    expect(
      message({ prompt: 'x', task: 'upscale', input: { ...input, width: 4096, height: 4096 } }),
    ).toMatch(/cannot be upscaled further/);
    expect(
      message({ prompt: 'x', input: { image: { kind: 'url', url: 'ftp://x/y.png' } } }),
    ).toMatch(/must be https/);
    expect(
      message({
        prompt: 'x',
        input: { image: { kind: 'url', url: 'https://u:p@cdn.discordapp.com/a.png' } },
      }),
    ).toMatch(/credentials/);
    expect(
      message({ prompt: 'x', input: { image: { kind: 'file', path: '/etc/passwd' } } }),
    ).toMatch(/input.image must be/);
    expect(
      message({ prompt: 'x', input: { image: { kind: 'slack-file', fileId: '../x' } } }),
    ).toMatch(/Slack file id/);
    expect(message({ prompt: 'x', input })).toBe('accepted');
  });

  it('push meta lists each image; the single-image shape still parses', () => {
    expect(
      PushMetaSchema.safeParse({ jobId, status: 'done', contentType: 'image/png', seed: 1 })
        .success,
    ).toBe(true);
    const four = PushMetaSchema.parse({
      jobId,
      status: 'done',
      task: 'generate',
      count: 4,
      seed: 1,
      images: imageSeeds(1, 4).map((seed) => ({
        contentType: 'image/png',
        seed,
        width: 64,
        height: 64,
      })),
    });
    expect(four.images?.map((i) => i.seed)).toEqual([1, 2, 3, 4]);
    expect(
      PushMetaSchema.safeParse({ jobId, status: 'done', images: Array(5).fill(four.images![0]) })
        .success,
    ).toBe(false);
  });
});
