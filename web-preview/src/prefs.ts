/**
 * The page's remembered choices (aspect, and whatever else the form offers), kept in this
 * browser's localStorage only: the server stores nothing for the web page. Values are checked
 * on the way in, so a stale or edited entry never breaks the form.
 */

const KEY = 'imagine.prefs.v1';

/** What the page remembers. Every field is optional. */
export type Prefs = Record<string, string | number | boolean>;

/** Read the remembered choices (`{}` when none, storage blocked, or the entry is not JSON). */
export function loadPrefs(): Prefs {
  try {
    const raw = globalThis.localStorage?.getItem(KEY);
    const parsed: unknown = raw ? JSON.parse(raw) : {};
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return {};
    const out: Prefs = {};
    for (const [k, v] of Object.entries(parsed))
      if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') out[k] = v;
    return out;
  } catch {
    return {};
  }
}

/** Remember one choice (private windows or full storage: silently not remembered). */
export function savePref(name: string, value: string | number | boolean | undefined): void {
  try {
    const prefs = loadPrefs();
    if (value === undefined) delete prefs[name];
    else prefs[name] = value;
    globalThis.localStorage?.setItem(KEY, JSON.stringify(prefs));
  } catch {
    // Nothing to do: the choice is simply not remembered.
  }
}
