/** The page's own checks and wording (pure functions, no browser). */
import { describe, expect, it } from 'vitest';
import { PromptSchema } from '../../contracts/job.ts';
import {
  checkPrompt,
  describeJobFailure,
  describeRefusal,
  describeWait,
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
