import { describe, expect, it } from 'vitest';
import { formatWindow } from '../../moderation/settings.ts';

describe('formatWindow (the echo of a window an admin set)', () => {
  it('says whole units as they are', () => {
    expect(formatWindow(45)).toBe('45 s');
    expect(formatWindow(600)).toBe('10 min');
    expect(formatWindow(7200)).toBe('2 h');
    expect(formatWindow(5400)).toBe('1 h 30 min');
    expect(formatWindow(86_400)).toBe('1 d');
    expect(formatWindow(90_000)).toBe('1 d 1 h');
  });

  it('never rounds a setting up into a unit it is not: 3599 s is not "60 min"', () => {
    expect(formatWindow(3599)).toBe('59 min 59 s');
    expect(formatWindow(90)).toBe('1 min 30 s');
    // Before, the minutes were rounded within the hour: "3 h 60 min".
    expect(formatWindow(14_399)).toBe('3 h 59 min 59 s');
    expect(formatWindow(7 * 86_400 - 1)).toBe('6 d 23 h 59 min 59 s');
  });

  it('says nothing below a second as 0 s', () => {
    expect(formatWindow(0)).toBe('0 s');
    expect(formatWindow(-5)).toBe('0 s');
  });
});
