import { describe, expect, it } from 'vitest';
import {
  BUILTIN_BLOCKED_WORDS,
  compileBlocklist,
  foldText,
  normaliseBlockedEntry,
} from '../../moderation/blocklist.ts';

describe('blocked words', () => {
  const list = compileBlocklist(['dragon', 'ass', 'self harm', 'porn*', '*phobe', 'Crème Brûlée']);

  it.each([
    ['plain', 'a red dragon over a castle', 'dragon'],
    ['upper case', 'A RED DRAGON', 'dragon'],
    ['mixed case and punctuation after', 'the Dragon!!! wakes', 'dragon'],
    ['accents', 'a drágön at dusk', 'dragon'],
    ['full-width letters', 'a ｄｒａｇｏｎ', 'dragon'],
    ['dots between letters', 'a d.r.a.g.o.n', 'dragon'],
    ['hyphen inside', 'a drag-on', 'dragon'],
    ['spaced letters', 'a d r a g o n here', 'dragon'],
    ['zero-width characters', 'a dra\u200bgon', 'dragon'],
    // Latin-1, one code unit past ASCII: folded in full, not by the plain-ASCII shortcut.
    ['a soft hyphen', 'a dra\u00adgon', 'dragon'],
    ['a combining accent', 'a drago\u0301n', 'dragon'],
    ['a Latin-1 letter with no decomposition', 'a DRAGØN', 'dragon'],
    ['look-alike digits', 'a dr4g0n', 'dragon'],
    ['stretched letters', 'a draaaaagon', 'dragon'],
    ['symbols for letters', 'kick a$$', 'ass'],
    ['a Cyrillic look-alike letter', 'a drаgon (Cyrillic а)', 'dragon'],
    ['Greek look-alike letters', 'a drαgοn', 'dragon'],
    ['quotes around', 'the word "ass"', 'ass'],
    ['a phrase', 'thoughts of self harm', 'self harm'],
    ['a phrase hyphenated', 'thoughts of self-harm', 'self harm'],
    ['a phrase run together', 'selfharm art', 'self harm'],
    ['a prefix pattern', 'pornographic poster', 'porn*'],
    ['a suffix pattern', 'a technophobe', '*phobe'],
    ['an accented entry, plain prompt', 'creme brulee on a plate', 'creme brulee'],
  ])('catches %s', (_name, prompt, entry) => {
    expect(list.match(prompt)).toBe(entry);
  });

  it.each([
    ['a word containing it', 'a first-class passenger'],
    ['another word containing it', 'an assassin in the dark'],
    ['a compound word', 'a dragonfly on a leaf'],
    ['a word it starts', 'snapdragons in a vase'],
    ['only half a phrase', 'a self portrait'],
    ['the prefix in the middle of a word', 'a sporn'],
    ['the suffix at the start', 'phobetor'],
    ['a plain number', 'a 1080p wallpaper'],
  ])('does not over-match %s', (_name, prompt) => {
    expect(list.match(prompt)).toBeUndefined();
  });

  it('built-ins catch their words but not innocent neighbours', () => {
    const builtins = compileBlocklist(BUILTIN_BLOCKED_WORDS);
    expect(builtins.match('a NÜDE statue')).toBe('nude');
    expect(builtins.match('n.s.f.w art')).toBe('nsfw');
    expect(builtins.match('an Essex landscape, unisex clothing, a sextant')).toBeUndefined();
    expect(builtins.match('nudel soup, a gorgeous sunset')).toBeUndefined();
    // Written with Cyrillic letters that look Latin; real Cyrillic and Greek text is left alone.
    expect(builtins.match('a nudе statue')).toBe('nude');
    expect(builtins.match('ѕех')).toBe('sex');
    expect(builtins.match('Привет, как дела? Καλημέρα κόσμε, σεξουαλικός')).toBeUndefined();
  });

  it('folds plain ASCII as the full fold does (its shortcut changes nothing but speed)', () => {
    const fullFold = (s: string) => s.normalize('NFKD').replace(/\p{M}/gu, '').toLowerCase();
    const every = Array.from({ length: 128 }, (_, c) => String.fromCharCode(c)).join('');
    expect(foldText(every)).toBe(fullFold(every));
    expect(foldText('A Red DRAGON, 4K\tHDR\n')).toBe('a red dragon, 4k\thdr\n');
    expect(foldText('DRAGØN\u00ad')).toBe('dragon');
  });

  it('normalises entries for storage and refuses empty ones', () => {
    expect(normaliseBlockedEntry('  Crème  Brûlée ')).toBe('creme brulee');
    expect(normaliseBlockedEntry('Porn*')).toBe('porn*');
    expect(normaliseBlockedEntry('!!!')).toBeUndefined();
    expect(normaliseBlockedEntry('x'.repeat(101))).toBeUndefined();
  });
});
