/**
 * The Modal app's GPU-free core (worker/modal/flux_core.py) under pytest, with Debian's
 * python3-fastapi, python3-pil, python3-pytest and python3-httpx (`.ci/run` installs them).
 * Each pytest test becomes one test here, so `npm test` counts and reports them.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

// Debian's interpreter, where apt puts those packages (a pyenv or venv python3 first on the
// PATH would not have them); PYTHON overrides.
const python =
  process.env.PYTHON ?? (existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3');

const run = spawnSync(
  python,
  ['-m', 'pytest', '-q', '-rA', '-p', 'no:cacheprovider', 'worker/modal'],
  {
    encoding: 'utf8',
    env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' },
    timeout: 120_000,
  },
);
const output = `${run.stdout ?? ''}${run.stderr ?? ''}${run.error ? String(run.error) : ''}`;
// `-rA` ends the output with one line per test: "PASSED path::name", "FAILED path::name - why".
const summary = output.split(/^=+ short test summary info =+$/m)[1] ?? '';
const results = [...summary.matchAll(/^(PASSED|FAILED|ERROR) (\S+::.+?)(?: - .*)?$/gm)].map(
  (m) => ({
    outcome: m[1] ?? '',
    id: m[2] ?? '',
  }),
);

describe('worker/modal under pytest', () => {
  it('pytest runs and collects the tests', () => {
    expect(run.error, output).toBeUndefined();
    // 0: all passed, 1: some failed (reported below); anything else is a broken run.
    expect([0, 1], output).toContain(run.status);
    expect(results.length, output).toBeGreaterThan(0);
  });

  for (const { outcome, id } of results) {
    it(id, () => {
      if (outcome !== 'PASSED') throw new Error(`pytest: ${outcome} ${id}\n${output}`);
    });
  }
});
