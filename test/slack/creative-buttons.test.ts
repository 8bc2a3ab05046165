/** The creative loop's button values and the requests a click makes (pure functions). */
import { describe, expect, it } from 'vitest';
import type { CardJob } from '../../bot/slack/creative.ts';
import {
  CREATIVE_ACTION_PATTERN,
  creativeButtons,
  decodeButton,
  encodeButton,
  loopResultMessage,
  requestForClick,
} from '../../bot/slack/creative.ts';
import { parseImagineRequest } from '../../submit/submit.ts';
import { buttonsOf } from '../fakes/slack/requests.ts';

const job = {
  jobId: 'AAAAAAAAAAAAAAAAAAAAAAAA',
  task: 'generate' as const,
  prompt: 'a koi | pond 🐟',
  seed: 10,
  width: 1024,
  height: 1024,
  count: 4,
  steps: 4,
};
const images = [0, 1, 2, 3].map((i) => ({
  seed: 10 + i,
  width: 1024,
  height: 1024,
  fileId: `F0000000${i}`,
}));

describe('Slack creative-loop buttons', () => {
  it('a grid gets U1–U4, V1–V4 and Re-roll; each value round-trips', () => {
    const buttons = buttonsOf(creativeButtons(job, images));
    expect(buttons.map((b) => b.action_id)).toEqual([
      'imagine_upscale_1',
      'imagine_upscale_2',
      'imagine_upscale_3',
      'imagine_upscale_4',
      'imagine_vary_strong_1',
      'imagine_vary_strong_2',
      'imagine_vary_strong_3',
      'imagine_vary_strong_4',
      'imagine_reroll_job',
    ]);
    for (const b of buttons) expect(CREATIVE_ACTION_PATTERN.test(b.action_id)).toBe(true);
    const u2 = decodeButton(buttons[1]!.value)!;
    expect(u2.prompt).toBe('a koi | pond 🐟');
    expect(u2.meta).toMatchObject({ i: 1, is: 11, f: 'F00000001', w: 1024, h: 1024 });
  });

  it('Re-roll carries the model the job named (and none when it named none)', () => {
    const reroll = (model?: string) => {
      const b = buttonsOf(creativeButtons({ ...job, ...(model ? { model } : {}) }, images)).at(-1)!;
      expect(b.action_id).toBe('imagine_reroll_job');
      return requestForClick(b.action_id, decodeButton(b.value)!)!;
    };
    expect(reroll('sdxl-base')).toMatchObject({ prompt: job.prompt, count: 4, model: 'sdxl-base' });
    expect(reroll()).not.toHaveProperty('model');
    // A value naming a model that is not a model name is not ours.
    const b = buttonsOf(creativeButtons({ ...job, model: 'sdxl-base' }, images)).at(-1)!;
    expect(decodeButton(b.value!.replace('"m":"sdxl-base"', '"m":"|bad|"'))).toBeUndefined();
  });

  it('a blurred image gets no U or V: its file in the thread is the blurred copy, not the image', () => {
    const flagged = images.map((image, i) => (i === 1 ? { ...image, spoiler: true } : image));
    const ids = buttonsOf(creativeButtons(job, flagged)).map((b) => b.action_id);
    expect(ids).not.toContain('imagine_upscale_2');
    expect(ids).not.toContain('imagine_vary_strong_2');
    expect(ids).toContain('imagine_upscale_1');
    expect(ids).toContain('imagine_vary_strong_3');
    expect(ids).toContain('imagine_reroll_job');
    const single = { ...job, count: 1 };
    const one = buttonsOf(creativeButtons(single, [{ ...images[0]!, spoiler: true }]));
    expect(one.map((b) => b.action_id)).toEqual(['imagine_reroll_job']);
  });

  it('U2 asks for an upscale of image 2; V3 for a strong vary of image 3, as big a grid', () => {
    const buttons = buttonsOf(creativeButtons(job, images));
    const u2 = buttons.find((b) => b.action_id === 'imagine_upscale_2')!;
    const v3 = buttons.find((b) => b.action_id === 'imagine_vary_strong_3')!;
    const up = requestForClick(u2.action_id, decodeButton(u2.value)!)!;
    expect(up).toEqual({
      prompt: 'a koi | pond 🐟',
      task: 'upscale',
      input: {
        image: { kind: 'slack-file', fileId: 'F00000001' },
        jobId: job.jobId,
        index: 1,
        seed: 11,
        width: 1024,
        height: 1024,
      },
    });
    const vary = requestForClick(v3.action_id, decodeButton(v3.value)!)!;
    expect(vary).toMatchObject({ task: 'vary', strength: 'strong', count: 4 });
    // Both are requests the submit path accepts.
    expect(parseImagineRequest(up).task).toBe('upscale');
    expect(parseImagineRequest(vary).task).toBe('vary');
  });

  it('one image: Vary (Subtle/Strong), Upscale while 2× fits, Re-roll; none for an upscale', () => {
    const single = { ...job, count: 1 };
    const one = [images[0]!];
    expect(buttonsOf(creativeButtons(single, one)).map((b) => b.action_id)).toEqual([
      'imagine_vary_subtle',
      'imagine_vary_strong',
      'imagine_upscale',
      'imagine_reroll_job',
    ]);
    const big = [{ ...images[0]!, width: 4096, height: 4096 }];
    const upscaled = { ...single, task: 'upscale' as const, width: 4096, height: 4096 };
    expect(buttonsOf(creativeButtons(upscaled, big)).map((b) => b.action_id)).toEqual([
      'imagine_vary_subtle',
      'imagine_vary_strong',
    ]);
    const subtle = buttonsOf(creativeButtons(single, one))[0]!;
    expect(requestForClick(subtle.action_id, decodeButton(subtle.value)!)).toMatchObject({
      task: 'vary',
      strength: 'subtle',
    });
  });

  it('no Upscale past what the generators upscale to (Flux on Modal: 2048; none: 0)', () => {
    const single = { ...job, count: 1 };
    const ids = (list: typeof images, limit: number, j: CardJob = job) =>
      buttonsOf(creativeButtons(j, list, limit)).map((b) => b.action_id);
    // 1024² images become 2048²: offered under a 2048 limit.
    expect(ids(images, 2048)).toContain('imagine_upscale_4');
    const wide = images.map((image) => ({ ...image, width: 1344, height: 768 }));
    expect(ids(wide, 2048).filter((id) => id.startsWith('imagine_upscale'))).toEqual([]);
    expect(ids(wide, 2048)).toContain('imagine_vary_strong_2');
    expect(ids(wide, 4096)).toContain('imagine_upscale_2');
    const upscaled = { ...single, task: 'upscale' as const, width: 2048, height: 2048 };
    const big = [{ ...images[0]!, width: 2048, height: 2048 }];
    expect(ids(big, 2048, upscaled)).toEqual(['imagine_vary_subtle', 'imagine_vary_strong']);
    expect(ids(big, 4096, upscaled)).toContain('imagine_upscale');
    expect(ids([images[0]!], 0, single)).not.toContain('imagine_upscale');
    // The result card passes the deliverer's limit on.
    const card = loopResultMessage(upscaled, [{ ...big[0]!, preview: true }], {
      userId: 'U1',
      demo: false,
      upscaleMaxSide: 2048,
    });
    expect(buttonsOf(card.blocks).map((b) => b.action_id)).not.toContain('imagine_upscale');
  });

  it('Re-roll repeats the job with new seeds; a vary re-roll varies the same input again', () => {
    const reroll = buttonsOf(creativeButtons(job, images)).at(-1)!;
    const req = requestForClick(reroll.action_id, decodeButton(reroll.value)!)!;
    expect(req).toEqual({ prompt: 'a koi | pond 🐟', count: 4, steps: 4, aspect: '1:1' });
    const varied = {
      ...job,
      task: 'vary' as const,
      strength: 0.35,
      inputFileId: 'F0SOURCE1',
      inputWidth: 640,
      inputHeight: 480,
    };
    const again = buttonsOf(creativeButtons(varied, images)).at(-1)!;
    const vreq = requestForClick(again.action_id, decodeButton(again.value)!)!;
    expect(vreq).toMatchObject({
      task: 'vary',
      strength: 0.35,
      input: { image: { kind: 'slack-file', fileId: 'F0SOURCE1' }, width: 640, height: 480 },
    });
    expect(parseImagineRequest(vreq).task).toBe('vary');
  });

  it('values that are not ours, or do not fit Slack’s 2000 characters, make no job or no buttons', () => {
    expect(decodeButton(undefined)).toBeUndefined();
    expect(decodeButton('v2|{"t":"generate"}|p')).toBeUndefined();
    expect(decodeButton('v2|{not json}|p')).toBeUndefined();
    expect(
      decodeButton(`v2|${JSON.stringify({ t: 'generate', n: 9, s: 1, w: 1, h: 1 })}|p`),
    ).toBeUndefined();
    const ok = encodeButton({ t: 'generate', n: 1, s: 1, w: 64, h: 64 }, 'p');
    expect(requestForClick('imagine_upscale', decodeButton(ok)!)).toBeUndefined();
    expect(creativeButtons({ ...job, prompt: '🐟'.repeat(1000) }, images)).toEqual([]);
  });
});
