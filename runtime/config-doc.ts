/** README's configuration table, made from the one ENV definition: `npm run docs:config`. */
import { ENV } from '../contracts/config.ts';

/** The markdown table of every variable. */
export function configTable(): string {
  const rows = Object.entries(ENV).map(([key, def]) => {
    const fallback = def.default === '' ? '—' : `\`${def.default}\``;
    return `| \`${key}\` | ${fallback} | ${def.doc.replace(/\|/g, '\\|')} |`;
  });
  return ['| variable | default | what it does |', '| --- | --- | --- |', ...rows].join('\n');
}

if (import.meta.main) process.stdout.write(`${configTable()}\n`);
