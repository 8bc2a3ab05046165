/**
 * Build the web page: `web-preview/src` → `web-preview/dist` (`npm run build:web`).
 * Scripts, styles and the icon get content-hashed names under `assets/` (cached for a year);
 * `index.html` refers to them and is revalidated on every visit. The new build is written
 * beside the old one and swapped in, so a running relay never sees half a build.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = fileURLToPath(new URL('.', import.meta.url));
const src = join(here, 'src');

/** Where the page was built, and the asset paths `index.html` refers to. */
export interface WebBuild {
  dir: string;
  script: string;
  styles: string;
  favicon: string;
}

/** Build the page into `outDir` (default `web-preview/dist`). */
export async function buildWebPreview(outDir = join(here, 'dist')): Promise<WebBuild> {
  const staging = `${outDir}.tmp-${process.pid}-${Date.now()}`;
  await rm(staging, { recursive: true, force: true });
  try {
    const result = await build({
      entryPoints: { app: join(src, 'main.ts'), styles: join(src, 'styles.css') },
      outdir: staging,
      entryNames: 'assets/[name]-[hash]',
      bundle: true,
      format: 'esm',
      platform: 'browser',
      target: ['chrome111', 'firefox115', 'safari16.4'],
      minify: true,
      sourcemap: 'linked',
      legalComments: 'none',
      metafile: true,
      logLevel: 'warning',
    });
    const outputs = Object.entries(result.metafile.outputs);
    const find = (entry: string, ext: string) => {
      const hit = outputs.find(
        ([path, out]) => out.entryPoint?.endsWith(entry) && path.endsWith(ext),
      );
      if (!hit) throw new Error(`web build: no ${ext} output for ${entry}`);
      return `/${relative(staging, hit[0]).split('\\').join('/')}`;
    };
    const script = find('main.ts', '.js');
    const styles = find('styles.css', '.css');

    const icon = await readFile(join(src, 'favicon.svg'));
    const iconHash = createHash('sha256').update(icon).digest('hex').slice(0, 10).toUpperCase();
    const favicon = `/assets/favicon-${iconHash}.svg`;
    await mkdir(join(staging, 'assets'), { recursive: true });
    await writeFile(join(staging, favicon), icon);

    const template = await readFile(join(src, 'index.html'), 'utf8');
    const html = template
      .replaceAll('%SCRIPT%', script)
      .replaceAll('%STYLES%', styles)
      .replaceAll('%FAVICON%', favicon);
    if (html.includes('%')) {
      const left = /%[A-Z_]+%/.exec(html);
      if (left) throw new Error(`web build: placeholder ${left[0]} left in index.html`);
    }
    await writeFile(join(staging, 'index.html'), html);

    // Swap: the old build goes aside and is removed once the new one is in place.
    const old = `${outDir}.old-${process.pid}-${Date.now()}`;
    await rename(outDir, old).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    await rename(staging, outDir);
    await rm(old, { recursive: true, force: true });
    return { dir: outDir, script, styles, favicon };
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const started = performance.now();
  const out = await buildWebPreview();
  console.log(
    `web page built in ${Math.round(performance.now() - started)} ms → ${relative(process.cwd(), out.dir) || basename(out.dir)} (${out.script}, ${out.styles})`,
  );
}
