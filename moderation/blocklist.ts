/**
 * Blocked words and patterns. Matching is on whole words after folding case, accents, common
 * look-alike digits and symbols (`n00d`, `a$$`), Cyrillic and Greek look-alike letters, zero-width characters and punctuation or spaces
 * put between letters (`n.u.d.e`, `n u d e`, `nu-de`), so `class` never matches `ass`.
 * An entry may be a phrase (`self harm`) and may carry `*` at either end (`porn*`).
 */

/** The small built-in list, on unless turned off (configuration or per scope). */
export const BUILTIN_BLOCKED_WORDS: readonly string[] = [
  'nsfw',
  'nude',
  'nudes',
  'nudity',
  'naked',
  'topless',
  'porn*',
  'hentai',
  'xxx',
  'sex',
  'sexual',
  'genitals',
  'penis',
  'vagina',
  'nipples',
  'loli',
  'lolicon',
  'shota',
  'shotacon',
  'csam',
  'gore',
  'gory',
  'beheading',
  'beheaded',
  'decapitated',
  'dismembered',
  'mutilated',
];

/** Longest blocked entry accepted, in characters. */
export const BLOCKED_ENTRY_MAX_CHARS = 100;
/** Most entries one scope may hold. */
export const BLOCKED_ENTRIES_MAX = 500;

const LOOKALIKE: Record<string, string> = {
  '0': 'o',
  '1': 'i',
  '3': 'e',
  '4': 'a',
  '5': 's',
  '7': 't',
  '8': 'b',
  '@': 'a',
  $: 's',
};
const UNDECOMPOSED: Record<string, string> = {
  ß: 'ss',
  æ: 'ae',
  œ: 'oe',
  ø: 'o',
  đ: 'd',
  ð: 'd',
  ł: 'l',
  ı: 'i',
  þ: 'th',
};
/** Cyrillic and Greek letters that look Latin (`nudе` with a Cyrillic `е`), after lower-casing. */
const CONFUSABLE: Record<string, string> = {
  а: 'a',
  в: 'b',
  е: 'e',
  к: 'k',
  м: 'm',
  н: 'h',
  о: 'o',
  р: 'p',
  с: 'c',
  т: 't',
  у: 'y',
  х: 'x',
  ѕ: 's',
  і: 'i',
  ј: 'j',
  ԁ: 'd',
  һ: 'h',
  ԛ: 'q',
  ԝ: 'w',
  ү: 'y',
  α: 'a',
  β: 'b',
  ε: 'e',
  η: 'n',
  ι: 'i',
  κ: 'k',
  ν: 'v',
  ο: 'o',
  ρ: 'p',
  τ: 't',
  υ: 'u',
  χ: 'x',
  ω: 'w',
  ɑ: 'a',
  ɡ: 'g',
};
const CONFUSABLE_CHARS = new RegExp(`[${Object.keys(CONFUSABLE).join('')}]`, 'gu');
const ZERO_WIDTH = /[\u00ad\u200b-\u200f\u2060-\u2064\ufeff]/gu;
const PART = /[\p{L}\p{N}@$]+/gu;
const LETTER = /\p{L}/u;
/** Characters {@link unLeet} maps or drops. */
const LEET = /[0134578@$]/;

/** Printable ASCII and whitespace only: nothing to decompose, strip or map but case. */
const PLAIN_ASCII = /^[\t\n\r\x20-\x7e]*$/;

/** Fold case, accents and Latin look-alikes; drop invisible characters. For tests and storage. */
export function foldText(s: string): string {
  // Most prompts are plain ASCII: every step below but the case fold leaves such text as it is.
  if (PLAIN_ASCII.test(s)) return s.toLowerCase();
  return s
    .normalize('NFKD')
    .replace(/\p{M}/gu, '')
    .toLowerCase()
    .replace(ZERO_WIDTH, '')
    .replace(/[ßæœøđðłıþ]/g, (c) => UNDECOMPOSED[c] ?? c)
    .replace(CONFUSABLE_CHARS, (c) => CONFUSABLE[c] ?? c);
}

/** A word part with look-alikes mapped, when it has letters (`n00d` → `nood`; `1080` stays). */
function unLeet(part: string): string {
  if (!LEET.test(part)) return part;
  if (!LETTER.test(part)) return part.replace(/[@$]/g, '');
  return part.replace(/[0134578@$]/g, (c) => LOOKALIKE[c] ?? c);
}

/** The words of a text, in order, after folding. */
function partsOf(chunk: string): string[] {
  const parts: string[] = [];
  PART.lastIndex = 0;
  for (let m = PART.exec(chunk); m !== null; m = PART.exec(chunk)) {
    const part = unLeet(m[0]);
    if (part.length > 0) parts.push(part);
  }
  return parts;
}

/** Runs of 3+ repeated letters stretched for evasion (`nuuuude`) → squeezed variants. */
function squeezed(word: string): string[] {
  if (!/(.)\1\1/u.test(word)) return [];
  return [word.replace(/(.)\1{2,}/gu, '$1$1'), word.replace(/(.)\1{2,}/gu, '$1')];
}

/** The tokens (for phrases) and every whole-word candidate of a prompt. */
function analyse(text: string): { tokens: string[]; candidates: Set<string> } {
  const folded = foldText(text);
  const tokens: string[] = [];
  const candidates = new Set<string>();
  let singles: string[] = [];
  const flushSingles = () => {
    // Any stretch of the run may be the word (`a d r a g o n`); stretches are capped to stay cheap.
    for (let i = 0; i + 3 <= singles.length; i++)
      for (let j = i + 3; j <= Math.min(singles.length, i + 32); j++)
        candidates.add(singles.slice(i, j).join(''));
    singles = [];
  };
  for (const chunk of folded.split(/\s+/u)) {
    const parts = partsOf(chunk);
    if (parts.length === 0) continue;
    // `n.u.d.e` and `nu-de`: the parts of one chunk joined are a candidate word too.
    if (parts.length > 1) candidates.add(parts.join(''));
    for (const part of parts) {
      tokens.push(part);
      candidates.add(part);
      // `n u d e`: single letters in a row, across spaces, spell a word.
      // One character is one or two code units (a surrogate pair); longer parts are words.
      if (part.length <= 2 && [...part].length === 1 && LETTER.test(part)) singles.push(part);
      else flushSingles();
    }
  }
  flushSingles();
  for (const c of [...candidates]) for (const s of squeezed(c)) candidates.add(s);
  return { tokens, candidates };
}

interface WordPattern {
  text: string;
  prefix: boolean;
  suffix: boolean;
}

interface CompiledEntry {
  source: string;
  words: WordPattern[];
  /** The phrase without spaces (`selfharm`), also matched as one word. */
  joined: WordPattern | undefined;
}

function wordMatches(pattern: WordPattern, word: string): boolean {
  if (pattern.prefix && pattern.suffix) return word.includes(pattern.text);
  if (pattern.suffix) return word.startsWith(pattern.text);
  if (pattern.prefix) return word.endsWith(pattern.text);
  return word === pattern.text;
}

/**
 * Normalise a moderator's entry for storage and comparison: folded, look-alikes mapped, single
 * spaces, `*` kept only at the ends. Returns undefined when nothing matchable is left.
 */
export function normaliseBlockedEntry(raw: string): string | undefined {
  const trimmed = raw.trim();
  if (trimmed.length === 0 || [...trimmed].length > BLOCKED_ENTRY_MAX_CHARS) return undefined;
  const suffix = trimmed.endsWith('*');
  const prefix = trimmed.startsWith('*');
  const words = partsOf(foldText(trimmed.replace(/^\*+|\*+$/g, '')));
  if (words.length === 0) return undefined;
  return `${prefix ? '*' : ''}${words.join(' ')}${suffix ? '*' : ''}`;
}

function compileEntry(entry: string): CompiledEntry | undefined {
  const normalised = normaliseBlockedEntry(entry);
  if (!normalised) return undefined;
  const prefix = normalised.startsWith('*');
  const suffix = normalised.endsWith('*');
  const texts = normalised.replace(/^\*|\*$/g, '').split(' ');
  const words = texts.map((text, i) => ({
    text,
    prefix: prefix && i === 0,
    suffix: suffix && i === texts.length - 1,
  }));
  return {
    source: normalised,
    words,
    joined: texts.length > 1 ? { text: texts.join(''), prefix, suffix } : undefined,
  };
}

/** A compiled list of blocked entries. */
export interface Blocklist {
  /** The entry a prompt hits, or undefined when it is clean. */
  match(prompt: string): string | undefined;
  readonly size: number;
}

/** Compile entries (moderators' words, built-ins) into a matcher. */
export function compileBlocklist(entries: Iterable<string>): Blocklist {
  const exact = new Map<string, string>();
  const others: CompiledEntry[] = [];
  for (const entry of entries) {
    const compiled = compileEntry(entry);
    if (!compiled) continue;
    const only = compiled.words.length === 1 ? compiled.words[0] : undefined;
    if (only && !only.prefix && !only.suffix) exact.set(only.text, compiled.source);
    else others.push(compiled);
  }
  return {
    size: exact.size + others.length,
    match(prompt) {
      const { tokens, candidates } = analyse(prompt);
      for (const c of candidates) {
        const hit = exact.get(c);
        if (hit) return hit;
      }
      for (const entry of others) {
        const { words, joined } = entry;
        if (words.length === 1) {
          const [w] = words;
          for (const c of candidates) if (wordMatches(w!, c)) return entry.source;
          continue;
        }
        if (joined) for (const c of candidates) if (wordMatches(joined, c)) return entry.source;
        for (let i = 0; i + words.length <= tokens.length; i++) {
          if (words.every((w, j) => wordMatches(w, tokens[i + j]!))) return entry.source;
        }
      }
      return undefined;
    },
  };
}
