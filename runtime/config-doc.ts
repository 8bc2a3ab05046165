/** Prints README's configuration table from the one ENV definition: `npm run docs:config`. */
import { ENV } from './config.ts';

const rows = Object.entries(ENV).map(([key, def]) => {
  const fallback = def.default === '' ? '—' : `\`${def.default}\``;
  return `| \`${key}\` | ${fallback} | ${def.doc.replace(/\|/g, '\\|')} |`;
});
process.stdout.write(
  `${['| variable | default | what it does |', '| --- | --- | --- |', ...rows].join('\n')}\n`,
);
