import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import {
  CUSTOM_ID_MAX,
  decodeCustomId,
  decodeSize,
  encodeCustomId,
  encodeSize,
  sizeSpecOf,
} from '../../bot/discord/custom-id.ts';
import { fitImage } from '../../bot/discord/fit-image.ts';
import {
  doneButtons,
  escapeMarkdown,
  failureLine,
  promptOf,
  retryButtons,
  statusLine,
  unescapeMarkdown,
} from '../../bot/discord/messages.ts';
import { verifyDiscordSignature } from '../../bot/discord/verify.ts';
import { ASPECT_SIZES } from '../../contracts/job.ts';
import { discordSigner } from '../fakes/discord/harness.ts';

describe('prompt in the embed', () => {
  it('escapes markdown reversibly, so a click reads back exactly the prompt', () => {
    const prompts = [
      'plain words',
      '**bold** _it_ ~~s~~ `code` > quote # h [link](x) <@123> :smile: a-b \\ back\\*slash',
      '\\\\*already escaped\\*',
    ];
    for (const p of prompts) {
      const escaped = escapeMarkdown(p);
      expect(unescapeMarkdown(escaped)).toBe(p);
      expect(promptOf({ embeds: [{ description: escaped }] })).toBe(p);
    }
    expect(escapeMarkdown('**x**')).toBe('\\*\\*x\\*\\*');
    expect(promptOf({ embeds: [] })).toBeUndefined();
  });
});

describe('custom ids', () => {
  it('every aspect round-trips and stays within 100 characters', () => {
    for (const [aspect, size] of Object.entries(ASPECT_SIZES)) {
      const spec = sizeSpecOf(size.width, size.height);
      expect(spec).toEqual({ aspect });
      const id = encodeCustomId('retry', encodeSize(spec), 4294967295);
      expect(id.length).toBeLessThanOrEqual(CUSTOM_ID_MAX);
      const { name, args } = decodeCustomId(id);
      expect(name).toBe('retry');
      expect(decodeSize(args[0])).toEqual({ aspect });
      expect(args[1]).toBe('4294967295');
    }
    expect(decodeSize(encodeSize(sizeSpecOf(1000, 640)))).toEqual({ width: 1000, height: 640 });
    expect(decodeSize('nonsense')).toEqual({});
    expect(() => encodeCustomId('x', 'y'.repeat(100))).toThrow();
    expect(() => encodeCustomId('x', 'a|b')).toThrow();
  });

  it('buttons carry size (and seed for Retry)', () => {
    const event = {
      jobId: 'j',
      state: 'done' as const,
      createdAt: 0,
      seed: 9,
      width: 768,
      height: 1344,
    };
    const ids = doneButtons(event).flatMap((r) =>
      r.components.map((c) => 'custom_id' in c && c.custom_id),
    );
    // No images (a job from before the grid): Re-roll alone.
    expect(ids).toEqual(['reroll|9:16|1']);
    const retry = retryButtons({ ...event, state: 'failed' }).flatMap((r) =>
      r.components.map((c) => 'custom_id' in c && c.custom_id),
    );
    // The count always: a request naming none gets the server's default (4), not the job's 1.
    expect(retry).toEqual(['retry|9:16|9|1']);
    expect(
      retryButtons({ ...event, state: 'failed', count: 4 }).flatMap((r) =>
        r.components.map((c) => 'custom_id' in c && c.custom_id),
      ),
    ).toEqual(['retry|9:16|9|4']);
    // A vary or upscale is retried from its source image's button.
    expect(retryButtons({ ...event, state: 'failed', task: 'vary' })).toEqual([]);
  });

  it('Retry carries the model a job named; a model name too long for custom_id gets no Retry and says so', () => {
    const failed = {
      jobId: 'j',
      state: 'failed' as const,
      createdAt: 0,
      seed: 4294967295,
      width: 1000,
      height: 600,
      count: 3,
      error: { code: 'GENERATION_FAILED', message: 'crashed' },
    };
    const ids = (model: string) =>
      retryButtons({ ...failed, model }).flatMap((r) =>
        r.components.map((c) => 'custom_id' in c && c.custom_id),
      );
    expect(ids('sdxl-base')).toEqual(['retry|1000x600|4294967295|3|sdxl-base']);
    expect(failureLine({ ...failed, model: 'sdxl-base' })).toMatch(/Press Retry/);
    // The longest id that fits: 100 characters exactly.
    const longest = 'm'.repeat(100 - 'retry|1000x600|4294967295|3|'.length);
    expect(ids(longest)[0]).toHaveLength(100);
    // One more character would drop the model, and a Retry without it would run another one.
    expect(ids(`${longest}m`)).toEqual([]);
    expect(failureLine({ ...failed, model: `${longest}m` })).toMatch(/Run \/imagine again/);
    expect(failureLine({ ...failed, model: `${longest}m` })).not.toMatch(/Retry/);
  });

  it('Re-roll carries the model a job named; a model name too long for custom_id leaves no Re-roll', () => {
    const done = { jobId: 'j', state: 'done' as const, createdAt: 0, width: 1000, height: 600 };
    const ids = (model?: string) =>
      doneButtons({ ...done, ...(model ? { model } : {}) }).flatMap((r) =>
        r.components.map((c) => 'custom_id' in c && c.custom_id),
      );
    expect(ids()).toEqual(['reroll|1000x600|1']);
    expect(ids('sdxl-base')).toEqual(['reroll|1000x600|1|sdxl-base']);
    const longest = 'm'.repeat(100 - 'reroll|1000x600|1|'.length);
    expect(ids(longest)[0]).toHaveLength(100);
    // A Re-roll that dropped the model would run another one: none.
    expect(ids(`${longest}m`)).toEqual([]);
  });

  it('an upscaled image offers Vary and a further Upscale only while 2× fits 4096', () => {
    const image = (side: number) => ({
      bytes: Buffer.alloc(0),
      contentType: 'image/png',
      seed: 3,
      width: side,
      height: side,
    });
    const ids = (side: number) =>
      doneButtons({
        jobId: 'j',
        state: 'done',
        createdAt: 0,
        task: 'upscale',
        seed: 3,
        width: side,
        height: side,
        images: [image(side)],
      }).flatMap((r) => r.components.map((c) => 'custom_id' in c && c.custom_id));
    expect(ids(2048)).toEqual([
      'up|0|3|2048x2048',
      'vy|0|3|2048x2048|subtle',
      'vy|0|3|2048x2048|strong',
    ]);
    expect(ids(4096)).toEqual(['vy|0|3|4096x4096|subtle', 'vy|0|3|4096x4096|strong']);
    for (const side of [64, 2048, 4096])
      for (const id of ids(side)) expect((id as string).length).toBeLessThanOrEqual(CUSTOM_ID_MAX);
  });
});

describe('status lines', () => {
  it('say how many jobs are ahead', () => {
    const base = { jobId: 'j', createdAt: 0 };
    expect(statusLine({ ...base, state: 'queued', position: 0 })).toMatch(/next/);
    expect(statusLine({ ...base, state: 'queued', position: 1 })).toMatch(/1 job ahead/);
    expect(statusLine({ ...base, state: 'queued', position: 3 })).toMatch(/3 jobs ahead/);
    expect(statusLine({ ...base, state: 'generating' })).toMatch(/Generating/);
  });
});

describe('fitImage', () => {
  it('keeps an image that fits, and shrinks one that cannot fit at full size', async () => {
    const noisy = await sharp(
      Buffer.from(Array.from({ length: 512 * 512 * 3 }, () => Math.floor(Math.random() * 256))),
      {
        raw: { width: 512, height: 512, channels: 3 },
      },
    )
      .png()
      .toBuffer();
    const same = await fitImage(noisy, 'image/png', noisy.length);
    expect(same.reencoded).toBe(false);
    expect(same.bytes).toBe(noisy);
    const small = await fitImage(noisy, 'image/png', 8_000);
    expect(small.reencoded).toBe(true);
    expect(small.bytes.length).toBeLessThanOrEqual(8_000);
    const meta = await sharp(small.bytes).metadata();
    expect(meta.width).toBeLessThan(512);
  });
});

describe('verifyDiscordSignature', () => {
  it('takes time as a parameter: fresh passes, 5 minutes and a second fails', async () => {
    const signer = discordSigner();
    const { discordPublicKey } = await import('../../bot/discord/verify.ts');
    const key = discordPublicKey(signer.publicKeyHex);
    const body = '{"type":1}';
    const h = signer.headers(body, 1_000_000);
    const headers = { signature: h['x-signature-ed25519'], timestamp: h['x-signature-timestamp'] };
    expect(() =>
      verifyDiscordSignature(key, headers, Buffer.from(body), 1_000_000_000),
    ).not.toThrow();
    expect(() => verifyDiscordSignature(key, headers, Buffer.from(body), 1_000_301_000)).toThrow(
      expect.objectContaining({ code: 'STALE_SIGNATURE' }),
    );
  });
});

describe('refusals', () => {
  it('say when to come back in words a person reads, not raw seconds', async () => {
    const { refusalText } = await import('../../bot/discord/messages.ts');
    const { ImagineError } = await import('../../contracts/errors.ts');
    const full = refusalText(new ImagineError('QUEUE_FULL', 'busy', { retryAfterSeconds: 3600 }));
    expect(full).toBe('🚦 The queue is full right now. Try again in 1 hour.');
    expect(full).not.toContain('3600');
    const policy = refusalText(
      new ImagineError(
        'RATE_LIMITED',
        'you have used your 20 images per hour here; try again in 42 minutes',
        {
          retryAfterSeconds: 2520,
        },
      ),
    );
    expect(policy).toBe('🐢 You have used your 20 images per hour here; try again in 42 minutes.');
    const bare = refusalText(
      new ImagineError('RATE_LIMITED', 'slow down', { retryAfterSeconds: 90 }),
    );
    expect(bare).toBe('🐢 Slow down. Try again in 2 minutes.');
  });
});
