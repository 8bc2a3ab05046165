import { describe, expect, it } from 'vitest';
import { ImagineError } from '../../contracts/errors.ts';
import { newJobId, PromptSchema } from '../../contracts/job.ts';
import { signPush, verifyPush } from '../../contracts/push.ts';
import { openReplyTarget, type ReplyTarget, sealReplyTarget } from '../../contracts/seal.ts';
import { DemoGenerator, renderDemoPixels } from '../../worker/generators/demo.ts';

const secret = 'x'.repeat(40);

describe('contracts', () => {
  it('job ids carry at least 128 random bits, URL-safe', () => {
    const ids = new Set(Array.from({ length: 1000 }, newJobId));
    expect(ids.size).toBe(1000);
    for (const id of ids) expect(id).toMatch(/^[A-Za-z0-9_-]{24}$/);
  });

  it('normalises prompt whitespace and refuses control characters', () => {
    expect(PromptSchema.parse('  a\n fox\tin  space ')).toBe('a fox in space');
    expect(PromptSchema.safeParse('a\u0000b').success).toBe(false);
  });

  it('seals reply targets so only the relay secret opens them', () => {
    const target: ReplyTarget = {
      platform: 'slack',
      // Long enough that a random ciphertext cannot contain it by chance (a 2-letter id did,
      // about one run in 50).
      channelId: 'C0SEALEDCHANNEL42',
      userId: 'U1',
      statusTs: '1.2',
    };
    const sealed = sealReplyTarget(secret, target);
    expect(sealed).not.toContain('C0SEALEDCHANNEL42');
    expect(openReplyTarget(secret, sealed)).toEqual(target);
    expect(() => openReplyTarget('y'.repeat(40), sealed)).toThrow(ImagineError);
    const flipped = `${sealed.slice(0, -2)}${sealed.at(-2) === 'A' ? 'B' : 'A'}${sealed.at(-1)}`;
    expect(() => openReplyTarget(secret, flipped)).toThrow(ImagineError);
    expect(() => openReplyTarget(secret, 'v1.')).toThrow(ImagineError);
  });

  it('signs and verifies pushes within the window only', () => {
    const body = Buffer.from('hello');
    const { timestamp, signature } = signPush(secret, body, 1_000_000);
    expect(() => verifyPush(secret, body, timestamp, signature, 1_000_100)).not.toThrow();
    expect(() => verifyPush(secret, body, timestamp, signature, 1_000_301)).toThrow(/window/);
    expect(() => verifyPush(secret, Buffer.from('hellO'), timestamp, signature, 1_000_000)).toThrow(
      /match/,
    );
  });

  it('the demo generator is deterministic in (prompt, seed)', async () => {
    const a = renderDemoPixels({ prompt: 'fox', seed: 1, width: 32, height: 32 });
    const b = renderDemoPixels({ prompt: 'fox', seed: 1, width: 32, height: 32 });
    const c = renderDemoPixels({ prompt: 'fox', seed: 2, width: 32, height: 32 });
    const d = renderDemoPixels({ prompt: 'cat', seed: 1, width: 32, height: 32 });
    expect(a.equals(b)).toBe(true);
    expect(a.equals(c)).toBe(false);
    expect(a.equals(d)).toBe(false);
    const [img] = await new DemoGenerator().generate(
      { task: 'generate', prompt: 'fox', seeds: [1], width: 1024, height: 1024, steps: 4 },
      { signal: new AbortController().signal },
    );
    expect(img!.bytes.subarray(1, 4).toString()).toBe('PNG');
  });
});
