/**
 * `/imagine a fox in space --ar 16:9 --seed 42 --steps 4 --model sdxl`: the prompt is the text, options
 * are `--name value` anywhere in it. The request is validated by the shared submit path.
 */
import { ImagineError } from '../../contracts/errors.ts';

/** How to use `/imagine`, shown on empty input and bad options. */
export const USAGE =
  'Usage: `/imagine <prompt> [--ar 16:9] [--count 4] [--seed 42] [--steps 4] [--model name]`, e.g. `/imagine a fox in space --ar 16:9`';

const OPTIONS: Record<string, 'aspect' | 'seed' | 'steps' | 'model' | 'count'> = {
  ar: 'aspect',
  aspect: 'aspect',
  model: 'model',
  seed: 'seed',
  steps: 'steps',
  count: 'count',
  n: 'count',
};

/**
 * Slack sends command and message text with its three control characters as entities
 * (`&amp;`, `&lt;`, `&gt;`); the prompt is what the user typed. `&amp;` goes last, so a typed
 * "&lt;" (sent as `&amp;lt;`) stays "&lt;".
 */
export function unescapeSlackText(text: string): string {
  return text.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

/**
 * Turn command or DM text, as Slack sends it, into an unvalidated request
 * (`INVALID_PARAMETERS` on unknown options).
 */
export function requestFromText(text: string): Record<string, unknown> {
  // Phones and macOS turn "--" into an em or en dash.
  const tokens = unescapeSlackText(text)
    .replace(/[\u2013\u2014](?=\w)/g, '--')
    .split(/\s+/)
    .filter(Boolean);
  const prompt: string[] = [];
  const request: Record<string, unknown> = {};
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    const match = /^--([a-z]+)(?:=(.*))?$/i.exec(token);
    if (!match) {
      prompt.push(token);
      continue;
    }
    const name = OPTIONS[match[1]!.toLowerCase()];
    if (!name) throw new ImagineError('INVALID_PARAMETERS', `unknown option ${token}`);
    const value = match[2] ?? tokens[++i];
    if (value === undefined) throw new ImagineError('INVALID_PARAMETERS', `${token} needs a value`);
    request[name] =
      name === 'aspect' || name === 'model' ? value : /^\d+$/.test(value) ? Number(value) : value;
  }
  request.prompt = prompt.join(' ');
  return request;
}
