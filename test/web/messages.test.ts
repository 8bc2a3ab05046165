/** The page's own checks and wording (pure functions, no browser). */
import { describe, expect, it } from 'vitest';
import { PromptSchema } from '../../contracts/job.ts';
import {
  describeTask,
  expectedSize,
  noUpscaleReason,
  upscaleWithin,
  withheldLine,
} from '../../web-preview/src/card.ts';
import { progressOf } from '../../web-preview/src/follow.ts';
import {
  checkImageFile,
  checkPrompt,
  describeCancel,
  describeJobFailure,
  describeQuotaLeft,
  describeRateLimit,
  describeRefusal,
  describeUploadRefusal,
  describeWait,
  describeWindow,
  formatBytes,
  formatElapsed,
  parseSeed,
  promptLength,
} from '../../web-preview/src/messages.ts';

describe('page checks agree with the server', () => {
  it.each([
    ['', false],
    ['  \n\t ', false],
    ['a fox', true],
    ['x'.repeat(1000), true],
    ['x'.repeat(1001), false],
    // Emoji are one character each, as the server counts them (code points).
    ['🦊'.repeat(1000), true],
    // Whitespace runs collapse before counting, on both sides.
    [`${'x'.repeat(999)}\n\n\n\ny`, false],
    [`${'x'.repeat(998)}\n\n\n\ny`, true],
  ])('%j accepted: %s', (prompt, ok) => {
    expect(checkPrompt(prompt) === undefined).toBe(ok);
    expect(PromptSchema.safeParse(prompt).success).toBe(ok);
  });

  it('counts what the server counts', () => {
    expect(promptLength('  a\n\nb  ')).toBe(3);
    expect(promptLength('🦊🦊')).toBe(2);
  });

  it('says how far over the limit a prompt is', () => {
    expect(checkPrompt('x'.repeat(1203))).toContain('shorten it by 203');
  });
});

describe('seed box', () => {
  it.each([
    ['', undefined, false],
    [' 42 ', 42, false],
    ['4294967295', 4294967295, false],
    ['4294967296', undefined, true],
    ['-1', undefined, true],
    ['1.5', undefined, true],
    ['abc', undefined, true],
  ])('%j → %s (error: %s)', (raw, seed, error) => {
    const parsed = parseSeed(raw);
    expect(parsed.seed).toBe(seed);
    expect(parsed.error !== undefined).toBe(error);
  });
});

describe('wording', () => {
  it('rate limits say when to come back', () => {
    expect(describeRefusal('RATE_LIMITED', 'x', 1)).toContain('in 1 second.');
    expect(describeRefusal('RATE_LIMITED', 'x', 90)).toContain('in 2 minutes.');
    expect(describeRefusal('RATE_LIMITED', 'x', undefined)).toContain('wait a little');
  });

  it('rate limits say how many images are left, how many to ask for now, and when the rest come back', () => {
    const now = new Date(2026, 11, 1, 18, 0, 0).getTime();
    const user = { of: 'user', limit: 6, remaining: 2, windowSeconds: 3600 } as const;
    const at = (s: number) =>
      new Date(now + s * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    expect(
      describeRateLimit('this asks for 4 images and …', { ...user, resetSeconds: 1800 }, 1800, now),
    ).toBe(
      `You have 2 of your 6 images per hour left: ask for 2 or fewer, or for more in 30 minutes (at ${at(1800)}).`,
    );
    expect(describeRateLimit('…', { ...user, remaining: 0, resetSeconds: 45 }, 45, now)).toBe(
      'You have made your 6 images per hour. You can make more in 45 seconds.',
    );
    expect(
      describeRateLimit(
        '…',
        { of: 'scope', limit: 500, remaining: 1, windowSeconds: 86_400, resetSeconds: 600 },
        600,
        now,
      ),
    ).toBe(
      `This site has 1 of its 500 images per day left, for everyone: ask for 1 or fewer, or for more in 10 minutes (at ${at(600)}).`,
    );
    // No quota (jobs in progress, requests paused): the server's own sentence, with the wait.
    expect(
      describeRateLimit(
        'you already have 2 jobs in progress (the limit here is 2); try again when one finishes',
        undefined,
        5,
      ),
    ).toBe(
      'You already have 2 jobs in progress (the limit here is 2); try again when one finishes.',
    );
    expect(
      describeRateLimit('moderators have paused image requests here', undefined, undefined),
    ).toBe('Moderators have paused image requests here. Please wait a little and try again.');
    expect(describeWindow(3600)).toBe('per hour');
    expect(describeWindow(1800)).toBe('per 30 minutes');
    expect(describeWindow(7200)).toBe('per 2 hours');
    expect(describeWindow(90)).toBe('per 90 seconds');
  });

  it('after an accepted job, says what is left of the images per window (the 202’s quota)', () => {
    const q = { windowSeconds: 3600, resetSeconds: 2520 };
    expect(describeQuotaLeft({ of: 'user', limit: 3, remaining: 2, ...q })).toBe(
      '2 of your 3 images per hour left.',
    );
    expect(describeQuotaLeft({ of: 'user', limit: 3, remaining: 0, ...q })).toBe(
      'That was the last of your 3 images per hour: more in 42 minutes.',
    );
    expect(
      describeQuotaLeft({
        of: 'scope',
        limit: 500,
        remaining: 1,
        windowSeconds: 86_400,
        resetSeconds: 600,
      }),
    ).toBe('This site has 1 of its 500 images per day left, for everyone.');
    expect(describeQuotaLeft({ of: 'scope', limit: 9, remaining: 0, ...q })).toBe(
      'That was the last of this site’s 9 images per hour, for everyone: more in 42 minutes.',
    );
  });

  it('unknown codes still read as a sentence', () => {
    expect(describeRefusal('SOMETHING_NEW', 'x', undefined)).toBe(
      'Something went wrong on the server (SOMETHING_NEW). Please try again.',
    );
  });

  it('formats waits and elapsed time', () => {
    expect(describeWait(0.2)).toBe('1 second');
    expect(describeWait(59)).toBe('59 seconds');
    expect(formatElapsed(7_900)).toBe('7 s');
    expect(formatElapsed(65_000)).toBe('1 min 05 s');
  });
});

describe('why a job ended without an image', () => {
  it('says a backend refused the request itself, apart from it being unavailable', () => {
    expect(describeJobFailure('GENERATOR_REJECTED')).toMatch(/refused this request/);
    expect(describeJobFailure('GENERATOR_UNAVAILABLE')).toMatch(/unavailable/);
    expect(describeJobFailure('SOMETHING_NEW')).toBe(
      'The image generator could not make this image.',
    );
  });
});

describe('input image checks', () => {
  const png = (size: number, name = 'a.png') => ({ name, type: 'image/png', size });
  it('takes PNG, JPEG and WebP up to the limit', () => {
    expect(checkImageFile(png(20 * 1024 * 1024), 20 * 1024 * 1024)).toBeUndefined();
    expect(
      checkImageFile({ name: 'a.jpg', type: 'image/jpeg', size: 10 }, undefined),
    ).toBeUndefined();
    expect(checkImageFile({ name: 'a.webp', type: 'image/webp', size: 10 }, 100)).toBeUndefined();
  });

  it('says what is wrong with a file, and the limit when it is too big', () => {
    expect(checkImageFile({ name: 'n.txt', type: 'text/plain', size: 5 }, undefined)).toBe(
      '“n.txt” is not an image. Choose a PNG, JPEG or WebP image.',
    );
    expect(checkImageFile({ name: 'x', type: '', size: 5 }, undefined)).toMatch(/not an image/);
    expect(checkImageFile({ name: 'a.gif', type: 'image/gif', size: 5 }, undefined)).toBe(
      '“a.gif” is a GIF image; this server takes PNG, JPEG or WebP images.',
    );
    expect(checkImageFile(png(0), undefined)).toMatch(/is empty/);
    expect(checkImageFile(png(25 * 1024 * 1024 + 1), 20 * 1024 * 1024)).toBe(
      '“a.png” is 25.0 MB; the largest image this server takes is 20 MB.',
    );
  });

  it('formats sizes as the limits are configured (powers of 1024)', () => {
    expect(formatBytes(20_971_520)).toBe('20 MB');
    expect(formatBytes(1_572_864)).toBe('1.5 MB');
    expect(formatBytes(4096)).toBe('4 KB');
    expect(formatBytes(300)).toBe('300 bytes');
  });

  it('says why the relay refused an upload', () => {
    expect(describeUploadRefusal('PAYLOAD_TOO_LARGE', 'Request body is too large', 4096)).toBe(
      'The server refused the image: it is over the 4 KB limit.',
    );
    expect(
      describeUploadRefusal('PAYLOAD_TOO_LARGE', 'the upload does not fit in memory', 4096),
    ).toBe('The server refused the image: the upload does not fit in memory.');
    expect(describeUploadRefusal('INVALID_IMAGE', 'not a PNG, JPEG or WebP', undefined)).toBe(
      'The server refused the image: not a PNG, JPEG or WebP.',
    );
  });
});

describe('result cards', () => {
  it('say how many of a job’s images were withheld, or nothing', () => {
    expect(withheldLine(undefined)).toBe('');
    expect(withheldLine({ blocked: 0, held: 0, of: 4 })).toBe('');
    expect(withheldLine({ blocked: 1, held: 1, of: 4 })).toBe(
      "2 of 4 images were withheld by this site's safety setting",
    );
    expect(withheldLine({ blocked: 0, held: 1, of: 2 })).toBe(
      "1 of 2 images was withheld by this site's safety setting",
    );
  });

  it('offer an upscale while the image is within the server’s largest side and twice it within 4096', () => {
    expect(upscaleWithin(1024, 1024, 2048, 4096)).toEqual({ width: 2048, height: 2048 });
    // The server measures an upscale's side on its input: 2048² may become 4096².
    expect(upscaleWithin(2048, 2048, 2048, 4096)).toEqual({ width: 4096, height: 4096 });
    expect(upscaleWithin(1344, 768, 2048, 4096)).toEqual({ width: 2688, height: 1536 });
    expect(upscaleWithin(1344, 768, 1024, 4096)).toBeUndefined();
    // Never past the contract's own upscale limit, whatever the server says.
    expect(upscaleWithin(4096, 4096, 10_000, 10_000)).toBeUndefined();
    expect(upscaleWithin(2100, 1000, 10_000, 10_000)).toBeUndefined();
  });

  it('offer an upscale only within what the server’s generators upscale to (Flux on Modal: 2048)', () => {
    expect(upscaleWithin(1024, 1024, 2048, 2048)).toEqual({ width: 2048, height: 2048 });
    expect(upscaleWithin(2048, 2048, 2048, 2048)).toBeUndefined();
    expect(upscaleWithin(1344, 768, 2048, 2048)).toBeUndefined();
    expect(upscaleWithin(512, 512, 2048, 0)).toBeUndefined();
    expect(noUpscaleReason(2, 1344, 768, 2048, 2048)).toBe(
      'Image 2 cannot be upscaled here: twice its size (2688 × 1536) is over the 2048 pixels a side this server upscales to',
    );
    expect(noUpscaleReason(1, 512, 512, 2048, 0)).toBe(
      'Image 1 cannot be upscaled here: this server does not upscale',
    );
    expect(noUpscaleReason(3, 1344, 768, 1024, 4096)).toBe(
      'Image 3 cannot be upscaled here: it is over 1024 pixels on a side',
    );
  });

  it('size their placeholders as the server will', () => {
    const blob = new Blob([]);
    const source = { blob, width: 320, height: 192, label: 'your image' };
    expect(expectedSize({ prompt: 'p', task: 'generate', aspect: '16:9' })).toEqual({
      width: 1344,
      height: 768,
    });
    expect(expectedSize({ prompt: 'p', task: 'upscale', source })).toEqual({
      width: 640,
      height: 384,
    });
    expect(expectedSize({ prompt: 'p', task: 'vary', source })).toEqual({
      width: 320,
      height: 192,
    });
    expect(describeTask({ prompt: 'p', task: 'vary', strength: 'subtle', source })).toBe(
      'Vary (subtle) of your image',
    );
    expect(describeTask({ prompt: 'p', task: 'vary', strength: 0.5, source })).toBe(
      'Vary (strength 0.50) of your image',
    );
    expect(describeTask({ prompt: 'p', task: 'generate' })).toBe('');
  });
});

describe('progress and cancel wording', () => {
  it('reads progress from the status frame, never inventing one', () => {
    expect(progressOf({})).toBeUndefined();
    expect(progressOf({ progress: 'half' })).toBeUndefined();
    expect(progressOf({ progress: 0.42, step: 11, steps: 28 })).toEqual({
      fraction: 0.42,
      step: 11,
      steps: 28,
    });
    // Steps alone are enough; out-of-range values are clamped, bad steps left out.
    expect(progressOf({ step: 3, steps: 4 })).toEqual({ fraction: 0.75, step: 3, steps: 4 });
    expect(progressOf({ progress: 1.7 })).toEqual({ fraction: 1 });
    expect(progressOf({ progress: -1, step: -2, steps: 0 })).toEqual({ fraction: 0 });
    expect(progressOf({ step: 1, steps: 0 })).toBeUndefined();
  });

  it('says why a cancel did not cancel', () => {
    expect(describeCancel({ outcome: 'already-finished', state: 'done' })).toBe(
      'Too late to cancel: the images were already made.',
    );
    expect(describeCancel({ outcome: 'already-finished', state: 'failed' })).toBe(
      'Nothing to cancel: the job had already ended.',
    );
    expect(describeCancel({ outcome: 'already-finished', state: 'cancelled' })).toBe(
      'This job was already cancelled.',
    );
    expect(describeCancel({ outcome: 'unknown' })).toMatch(/no longer knows/);
    expect(describeCancel({ outcome: 'error', code: 'UNREACHABLE', message: 'x' })).toBe(
      'Could not cancel: the server cannot be reached. Try again.',
    );
  });
});
