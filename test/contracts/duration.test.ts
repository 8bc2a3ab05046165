import { describe, expect, it } from 'vitest';
import { formatDuration, formatPer } from '../../contracts/duration.ts';

describe('formatDuration: how long, as a person writes it', () => {
  it('seconds, singular and plural; a fraction is a whole second, nothing is 0', () => {
    expect(formatDuration(1)).toBe('1 second');
    expect(formatDuration(0.2)).toBe('1 second');
    expect(formatDuration(42)).toBe('42 seconds');
    expect(formatDuration(59)).toBe('59 seconds');
    expect(formatDuration(0)).toBe('0 seconds');
    expect(formatDuration(-5)).toBe('0 seconds');
    expect(formatDuration(Number.NaN)).toBe('0 seconds');
  });

  it('minutes, rounded up (a wait is never said shorter than it is)', () => {
    expect(formatDuration(60)).toBe('1 minute');
    expect(formatDuration(59.5)).toBe('1 minute');
    expect(formatDuration(61)).toBe('2 minutes');
    expect(formatDuration(90)).toBe('2 minutes');
    expect(formatDuration(42 * 60)).toBe('42 minutes');
    expect(formatDuration(10 * 60)).toBe('10 minutes');
  });

  it('an hour, never "60 minutes"', () => {
    expect(formatDuration(3600)).toBe('1 hour');
    expect(formatDuration(3599)).toBe('1 hour');
    expect(formatDuration(3541)).toBe('1 hour');
    expect(formatDuration(3540)).toBe('59 minutes');
  });

  it('hours and minutes, never "1 hour 60 minutes"', () => {
    expect(formatDuration(3601)).toBe('1 hour 1 minute');
    expect(formatDuration(5400)).toBe('1 hour 30 minutes');
    expect(formatDuration(7200)).toBe('2 hours');
    expect(formatDuration(7199)).toBe('2 hours');
    expect(formatDuration(2 * 3600 + 5 * 60)).toBe('2 hours 5 minutes');
    expect(formatDuration(86_399)).toBe('1 day');
  });

  it('days, and days and hours', () => {
    expect(formatDuration(86_400)).toBe('1 day');
    expect(formatDuration(86_401)).toBe('1 day 1 hour');
    expect(formatDuration(86_400 + 3 * 3600)).toBe('1 day 3 hours');
    expect(formatDuration(2 * 86_400)).toBe('2 days');
    expect(formatDuration(7 * 86_400)).toBe('7 days');
  });
});

describe('formatPer: a rate-limit window', () => {
  it('one of a unit is "per hour", several are counted, in the largest unit that divides', () => {
    expect(formatPer(3600)).toBe('per hour');
    expect(formatPer(86_400)).toBe('per day');
    expect(formatPer(60)).toBe('per minute');
    expect(formatPer(1)).toBe('per second');
    expect(formatPer(600)).toBe('per 10 minutes');
    expect(formatPer(5400)).toBe('per 90 minutes');
    expect(formatPer(7200)).toBe('per 2 hours');
    expect(formatPer(129_600)).toBe('per 36 hours');
    expect(formatPer(7 * 86_400)).toBe('per 7 days');
    expect(formatPer(90)).toBe('per 90 seconds');
  });
});
