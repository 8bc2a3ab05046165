/**
 * ComfyUI workflows in its API format (`Save (API)` in ComfyUI) with named placeholders: a string
 * value that is exactly `"{{name}}"` becomes that value with its own type (a number stays a
 * number), and `{{name}}` inside a longer string is replaced as text. Checked once at start-up.
 */
import { readFileSync } from 'node:fs';
import { ImagineError } from '../../contracts/errors.ts';

/** The placeholders a workflow may use. */
export const PLACEHOLDERS = [
  'prompt',
  'seed',
  'width',
  'height',
  'steps',
  'count',
  'image',
  'strength',
  'model',
] as const;
/** One of {@link PLACEHOLDERS}. */
export type Placeholder = (typeof PLACEHOLDERS)[number];

/** An API-format workflow: node id → `{class_type, inputs}`. */
export type Workflow = Record<string, { class_type: string; inputs: Record<string, unknown> }>;

/** A checked workflow and the placeholders it uses. */
export interface LoadedWorkflow {
  workflow: Workflow;
  uses: ReadonlySet<Placeholder>;
  /** Where it came from, for messages. */
  source: string;
}

const TOKEN = /\{\{([a-z_]+)\}\}/g;

/** Bundled default workflows (Flux schnell, fp8 all-in-one checkpoint). */
export const DEFAULT_WORKFLOWS = {
  generate: new URL('./comfyui-workflows/flux-schnell-txt2img.json', import.meta.url),
  vary: new URL('./comfyui-workflows/flux-schnell-img2img.json', import.meta.url),
} as const;

/** Check a parsed workflow; `needs` are placeholders it must contain. */
export function checkWorkflow(
  parsed: unknown,
  source: string,
  needs: readonly Placeholder[],
): LoadedWorkflow {
  const fail = (why: string) => new Error(`ComfyUI workflow ${source}: ${why}`);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw fail('is not an API-format workflow (an object of nodes; use "Save (API)" in ComfyUI)');
  const uses = new Set<Placeholder>();
  const visit = (value: unknown): void => {
    if (typeof value === 'string') {
      for (const [, name] of value.matchAll(TOKEN)) {
        if (!(PLACEHOLDERS as readonly string[]).includes(name!))
          throw fail(`unknown placeholder {{${name}}} (known: ${PLACEHOLDERS.join(', ')})`);
        uses.add(name as Placeholder);
      }
    } else if (Array.isArray(value)) value.forEach(visit);
    else if (typeof value === 'object' && value !== null) Object.values(value).forEach(visit);
  };
  for (const [id, node] of Object.entries(parsed)) {
    const n = node as { class_type?: unknown; inputs?: unknown };
    if (typeof n !== 'object' || n === null || typeof n.class_type !== 'string')
      throw fail(`node ${id} has no class_type (is this the UI format? use "Save (API)")`);
    if (typeof n.inputs !== 'object' || n.inputs === null) throw fail(`node ${id} has no inputs`);
    visit(n.inputs);
  }
  for (const need of needs) if (!uses.has(need)) throw fail(`needs a {{${need}}} placeholder`);
  return { workflow: parsed as Workflow, uses, source };
}

/** Read and check a workflow file. */
export function loadWorkflow(path: string | URL, needs: readonly Placeholder[]): LoadedWorkflow {
  const source = String(path);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`ComfyUI workflow ${source}: cannot be read (${(err as Error).message})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error(`ComfyUI workflow ${source}: is not JSON`);
  }
  return checkWorkflow(parsed, source, needs);
}

/** The workflow with every placeholder filled in (a fresh copy). */
export function fillWorkflow(
  loaded: LoadedWorkflow,
  values: Partial<Record<Placeholder, string | number>>,
): Workflow {
  const fill = (value: unknown): unknown => {
    if (typeof value === 'string') {
      const whole = /^\{\{([a-z_]+)\}\}$/.exec(value);
      if (whole) return valueFor(whole[1] as Placeholder);
      return value.replace(TOKEN, (_, name: string) => String(valueFor(name as Placeholder)));
    }
    if (Array.isArray(value)) return value.map(fill);
    if (typeof value === 'object' && value !== null)
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fill(v)]));
    return value;
  };
  const valueFor = (name: Placeholder): string | number => {
    const v = values[name];
    if (v === undefined)
      throw new ImagineError(
        'GENERATOR_REJECTED',
        `ComfyUI workflow ${loaded.source} uses {{${name}}}, which this request has no value for`,
      );
    return v;
  };
  return fill(loaded.workflow) as Workflow;
}
