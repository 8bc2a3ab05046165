/**
 * The house reads top to bottom: runtime → relay, bot, worker → submit, moderation, queue →
 * contracts. A room imports only rooms below it (or itself): never one above, never one beside.
 * Read from the source files' own import statements (static, dynamic and type-only alike).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..');
/** Each room's floor: lower numbers are higher up the house. */
const FLOORS: Record<string, number> = {
  runtime: 0,
  relay: 1,
  bot: 1,
  worker: 1,
  submit: 2,
  moderation: 2,
  queue: 2,
  contracts: 3,
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' ? [] : sourceFiles(path);
    return e.name.endsWith('.ts') ? [path] : [];
  });
}

const roomOf = (file: string) => relative(ROOT, file).split(sep)[0]!;

/** The relative modules a file imports: `from '…'`, `import('…')`, `import '…'`. */
function importsOf(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(
    /(?:\bfrom\s+|\bimport\s*\(\s*|\bimport\s+)(['"])(\.{1,2}\/[^'"]+)\1/g,
  ))
    out.push(m[2]!);
  return out;
}

/** Every import that goes up the house or sideways, as `file → module`. */
function violations(): string[] {
  const found: string[] = [];
  for (const room of Object.keys(FLOORS)) {
    for (const file of sourceFiles(join(ROOT, room))) {
      const floor = FLOORS[room]!;
      for (const spec of importsOf(readFileSync(file, 'utf8'))) {
        const target = roomOf(resolve(file, '..', spec));
        const targetFloor = FLOORS[target];
        if (target === room || targetFloor === undefined) continue;
        if (targetFloor <= floor) found.push(`${relative(ROOT, file)} → ${spec}`);
      }
    }
  }
  return found;
}

describe('the house order', () => {
  it('finds an import beside or above its room (the check itself)', () => {
    expect(
      importsOf(
        `import type { A } from '../submit/submit.ts';\nconst m = await import('../relay/app.ts');`,
      ),
    ).toEqual(['../submit/submit.ts', '../relay/app.ts']);
  });

  it('no room imports a room beside it or above it (moderation/ takes the admission port from contracts/)', () => {
    expect(violations()).toEqual([]);
  });
});
