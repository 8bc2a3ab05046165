/**
 * One result card: a submitted request from queued to its images (a grid when a job makes
 * several), with the creative loop under them: U1–U4 (upscale one), V1–V4 (vary one, subtle or
 * strong), Re-roll (same prompt, new seeds); a single image offers Vary and a further Upscale
 * while the size limit allows.
 */
import { ALT_TEXT_MAX, imageAltText } from '../../contracts/delivery.ts';
import {
  ASPECT_SIZES,
  type AspectRatio,
  type JobTask,
  UPSCALE_MAX_SIDE,
  upscaleSize,
  type VaryPreset,
  varySize,
} from '../../contracts/limits.ts';
import { ApiError, type CancelOutcome, cancelJob, type Enqueued, type Strength } from './api.ts';
import { button, el } from './dom.ts';
import {
  type FollowEvent,
  type FollowedImage,
  type Follower,
  followJob,
  type Progress,
  type Transport,
  type Withheld,
} from './follow.ts';
import { describeCancel, describeJobFailure, formatElapsed } from './messages.ts';
import type { ViewedImage } from './viewer.ts';

/** The input image of a vary or upscale: the page's own copy, and where it came from. */
export interface SourceImage {
  blob: Blob;
  width: number;
  height: number;
  /** When it is one of our results: its job, its 0-based index there, and its seed. */
  jobId?: string;
  index?: number;
  seed?: number;
  /** How the card names it: "image 2", "your image". */
  label: string;
}

/** What one card asks the server for (the source image travels as the page's own copy). */
export interface PageRequest {
  prompt: string;
  task: JobTask;
  aspect?: AspectRatio;
  seed?: number;
  model?: string;
  count?: number;
  strength?: Strength;
  source?: SourceImage;
}

/** What a card needs from the page around it. */
export interface CardHost {
  /** Start a new job (a new card). */
  submit(request: PageRequest): Promise<boolean>;
  /** Send this card's own request again, in this card. */
  rerun(card: ResultCard): Promise<void>;
  /** Put a prompt and seed back into the form. */
  useSeed(prompt: string, seed: number, aspect: AspectRatio | undefined): void;
  /** Open one image full size. */
  view(image: ViewedImage, opener: HTMLElement): void;
  /** Largest side the server takes an image (LIMIT_IMAGE_SIDE; an upscale's input). */
  maxSide(): number;
  /** Largest side of an upscale the server's generators make (0: they do not upscale). */
  upscaleMaxSide(): number;
  /** Images a new job makes (the form's choice). */
  count(): number;
  /** The vary strength new cards start with, and remembering a change. */
  varyPreset(): VaryPreset;
  rememberVaryPreset(preset: VaryPreset): void;
}

const TRANSPORT_NOTES: Record<Transport, string> = {
  websocket: '',
  reconnecting: 'Live connection lost; reconnecting…',
  polling: 'Live updates unavailable; checking every second instead.',
  unreachable: 'Cannot reach the server; still trying…',
};

/** The size a request's images will have, before the server says. */
export function expectedSize(req: PageRequest): { width: number; height: number } {
  if (req.task === 'upscale' && req.source)
    return upscaleSize(req.source.width, req.source.height) ?? req.source;
  if (req.task === 'vary' && req.source && !req.aspect)
    return varySize(req.source.width, req.source.height);
  return ASPECT_SIZES[req.aspect ?? '1:1'];
}

/** What a card says its request is, under the prompt. */
export function describeTask(req: PageRequest): string {
  const from = req.source?.label ?? 'an image';
  if (req.task === 'upscale') return `Upscale 2× of ${from}`;
  if (req.task === 'vary') {
    const strength =
      typeof req.strength === 'number'
        ? `strength ${req.strength.toFixed(2)}`
        : (req.strength ?? 'strong');
    return `Vary (${strength}) of ${from}`;
  }
  return '';
}

/** The "1 of 4 images was withheld…" line, or '' when none was. */
export function withheldLine(withheld: Withheld | undefined): string {
  if (!withheld) return '';
  const n = withheld.blocked + withheld.held;
  if (n <= 0) return '';
  return `${n} of ${withheld.of} images ${n === 1 ? 'was' : 'were'} withheld by this site's safety setting`;
}

/**
 * The size an upscale of this image makes, or undefined when the relay would refuse it: an
 * upscale's input must keep within `maxSide` (LIMIT_IMAGE_SIDE, measured on what it starts from)
 * and its output within `upscaleMaxSide` (what the server's generators upscale to).
 */
export function upscaleWithin(
  width: number,
  height: number,
  maxSide: number,
  upscaleMaxSide: number,
): { width: number; height: number } | undefined {
  if (Math.max(width, height) > maxSide) return undefined;
  return upscaleSize(width, height, upscaleMaxSide);
}

/** Why image `n` (`width`×`height`) offers no upscale here, in a sentence. */
export function noUpscaleReason(
  n: number,
  width: number,
  height: number,
  maxSide: number,
  upscaleMaxSide: number,
): string {
  if (Math.max(width, height) > maxSide)
    return `Image ${n} cannot be upscaled here: it is over ${maxSide} pixels on a side`;
  if (upscaleMaxSide <= 0)
    return `Image ${n} cannot be upscaled here: this server does not upscale`;
  return `Image ${n} cannot be upscaled here: twice its size (${width * 2} × ${height * 2}) is over the ${Math.min(upscaleMaxSide, UPSCALE_MAX_SIDE)} pixels a side this server upscales to`;
}

/** Columns and rows of a grid of `count` images (one alone, else two columns). */
function gridShape(count: number): { cols: number; rows: number } {
  const cols = count <= 1 ? 1 : 2;
  return { cols, rows: Math.ceil(count / cols) };
}

interface Shown {
  image: FollowedImage;
  url: string;
  tile: HTMLButtonElement;
}

let cardSerial = 0;

/** One submitted request, from queued to its images (or its error). */
export class ResultCard {
  readonly root: HTMLLIElement;
  readonly request: PageRequest;
  private readonly host: CardHost;
  private readonly serial = ++cardSerial;
  private readonly frame: HTMLDivElement;
  private readonly status: HTMLParagraphElement;
  private readonly elapsed: HTMLSpanElement;
  private readonly bar: HTMLDivElement;
  private readonly note: HTMLParagraphElement;
  private readonly meta: HTMLParagraphElement;
  private readonly actions: HTMLDivElement;
  private readonly loop: HTMLDivElement;
  private readonly percent: HTMLSpanElement;
  private readonly cancelNote: HTMLParagraphElement;
  private readonly cancelButton: HTMLButtonElement;
  private preview: { img: HTMLImageElement; url: string } | undefined;
  private follower: Follower | undefined;
  private ticker: ReturnType<typeof setInterval> | undefined;
  private startedAt = 0;
  private job: Enqueued | undefined;
  private shown: Shown[] = [];
  private size = { width: 1024, height: 1024 };

  constructor(request: PageRequest, host: CardHost) {
    this.request = request;
    this.host = host;
    this.root = el('li', 'card');
    const task = describeTask(request);
    this.root.setAttribute(
      'aria-label',
      task ? `${task} for: ${request.prompt}` : `Images for: ${request.prompt}`,
    );
    this.root.dataset.task = request.task;
    this.frame = el('div', 'frame');
    const body = el('div', 'card-body');
    const prompt = el('p', 'card-prompt', request.prompt);
    const statusRow = el('div', 'status-row');
    this.status = el('p', 'status');
    this.status.setAttribute('role', 'status');
    this.status.setAttribute('aria-live', 'polite');
    this.elapsed = el('span', 'elapsed');
    this.elapsed.setAttribute('aria-hidden', 'true');
    this.percent = el('span', 'percent');
    this.percent.setAttribute('aria-hidden', 'true');
    statusRow.append(this.status, this.percent, this.elapsed);
    this.bar = el('div', 'progress');
    this.bar.setAttribute('role', 'progressbar');
    this.bar.setAttribute('aria-label', 'Progress');
    this.bar.setAttribute('aria-valuemin', '0');
    this.bar.setAttribute('aria-valuemax', '100');
    this.bar.append(el('div', 'progress-fill'));
    this.note = el('p', 'transport-note');
    this.note.hidden = true;
    this.meta = el('p', 'card-meta');
    this.cancelNote = el('p', 'cancel-note');
    this.cancelNote.setAttribute('aria-live', 'polite');
    this.cancelNote.hidden = true;
    this.cancelButton = button('button', 'Cancel', `Cancel: ${request.prompt}`);
    this.cancelButton.addEventListener('click', () => void this.cancel());
    this.actions = el('div', 'card-actions');
    this.loop = el('div', 'loop');
    this.loop.setAttribute('role', 'group');
    this.loop.setAttribute('aria-label', 'Make more from these images');
    body.append(prompt);
    if (task) body.append(el('p', 'card-task', task));
    body.append(
      statusRow,
      this.bar,
      this.note,
      this.meta,
      this.cancelNote,
      this.actions,
      this.loop,
    );
    this.root.append(this.frame, body);
  }

  private get expectedCount(): number {
    return this.request.task === 'upscale' ? 1 : (this.request.count ?? 1);
  }

  /** Lay the frame out for `count` images of the current size, so nothing jumps later. */
  private layout(count: number): void {
    const { cols, rows } = gridShape(count);
    const ratio = (cols * this.size.width) / (rows * this.size.height);
    this.frame.style.aspectRatio = `${cols * this.size.width} / ${rows * this.size.height}`;
    this.frame.classList.toggle('grid', count > 1);
    // A grid narrows rather than letterboxing its tiles when the screen is too short for it.
    this.frame.style.maxWidth = count > 1 ? `calc(70vh * ${ratio.toFixed(4)})` : '';
    this.frame.style.gridTemplateColumns = count > 1 ? `repeat(${cols}, minmax(0, 1fr))` : '';
    this.frame.style.gridTemplateRows = count > 1 ? `repeat(${rows}, minmax(0, 1fr))` : '';
  }

  /** Placeholders for the images to come. */
  private placeholders(count: number): void {
    this.layout(count);
    const tiles = Array.from({ length: count }, () => {
      const tile = el('div', 'tile pending');
      tile.append(el('div', 'shimmer'));
      return tile;
    });
    this.frame.replaceChildren(...tiles);
  }

  /** Show the card in its "sending" state. */
  sending(): void {
    this.freeImages();
    this.size = expectedSize(this.request);
    this.placeholders(this.expectedCount);
    this.root.dataset.state = 'sending';
    this.note.hidden = true;
    this.bar.hidden = false;
    this.meta.textContent = '';
    this.actions.replaceChildren();
    this.loop.replaceChildren();
    this.cancelNote.hidden = true;
    this.setStatus(this.request.source ? 'Sending the image…' : 'Sending…', undefined);
    this.startedAt = performance.now();
    clearInterval(this.ticker);
    this.ticker = setInterval(() => this.tick(), 250);
    this.tick();
  }

  /** The server took the job: follow it. */
  follow(job: Enqueued): void {
    this.job = job;
    this.root.dataset.jobId = job.jobId;
    this.size = { width: job.width, height: job.height };
    this.layout(this.expectedCount);
    this.meta.textContent = this.metaText(this.seedsOf(job.seed), job.demo);
    this.queued(job.position);
    this.cancelButton.disabled = false;
    this.cancelButton.removeAttribute('aria-busy');
    this.actions.replaceChildren(this.cancelButton);
    this.follower = followJob({
      jobId: job.jobId,
      wsUrl: job.ws,
      statusUrl: job.status,
      imageUrl: job.image,
      onEvent: (event) => this.onEvent(event),
    });
  }

  /** The seeds of this job's images: image i is made with (seed + i) mod 2^32. */
  private seedsOf(seed: number): number[] {
    return Array.from({ length: this.expectedCount }, (_, i) => (seed + i) % 2 ** 32);
  }

  private metaText(seeds: number[], demo: boolean): string {
    const label = seeds.length === 1 ? `Seed ${seeds[0]}` : `Seeds ${seeds.join(', ')}`;
    return `${label} · ${this.size.width} × ${this.size.height}${demo ? ' · demo' : ''}`;
  }

  /** The server refused or could not be reached: the card is dropped, the form says why. */
  discard(): void {
    clearInterval(this.ticker);
    this.root.remove();
  }

  private queued(position: number | undefined): void {
    const ahead =
      position === undefined || position <= 0
        ? 'next in line'
        : `${position} ${position === 1 ? 'job' : 'jobs'} ahead`;
    this.root.dataset.state = 'queued';
    this.setStatus(`Queued, ${ahead}`, undefined);
  }

  private onEvent(event: FollowEvent): void {
    switch (event.kind) {
      case 'status':
        if (event.state === 'queued') this.queued(event.position);
        else this.generating(event.progress);
        return;
      case 'preview':
        this.showPreview(event.blob);
        return;
      case 'cancelled':
        this.cancelled();
        return;
      case 'transport':
        this.root.dataset.transport = event.transport;
        this.note.textContent = TRANSPORT_NOTES[event.transport];
        this.note.hidden = event.transport === 'websocket';
        return;
      case 'image':
        this.showImage(event.image);
        return;
      case 'done':
        this.done(event.count, event.withheld, event.via);
        return;
      case 'failed':
        this.failed(event.code, event.message);
        return;
    }
  }

  /** Generating: the generator's own progress on the bar, or an indeterminate bar without. */
  private generating(progress: Progress | undefined): void {
    if (this.shown.length > 0) return;
    this.root.dataset.state = 'generating';
    if (!progress) {
      this.setStatus('Generating…', undefined);
      return;
    }
    const percent = Math.round(progress.fraction * 100);
    const steps =
      progress.step !== undefined && progress.steps !== undefined
        ? ` (step ${progress.step} of ${progress.steps})`
        : '';
    this.setStatus('Generating…', percent, `${percent}%${steps}`);
  }

  /** The latest preview, over the placeholders until the images come. */
  private showPreview(blob: Blob): void {
    if (this.shown.length > 0 || this.root.dataset.state === 'cancelled') return;
    const url = URL.createObjectURL(blob);
    if (!this.preview) {
      const img = el('img', 'preview-image');
      img.alt = 'Preview of the image forming';
      this.frame.append(img);
      this.preview = { img, url };
    } else {
      URL.revokeObjectURL(this.preview.url);
      this.preview.url = url;
    }
    this.preview.img.src = url;
    this.root.dataset.preview = 'true';
  }

  private dropPreview(): void {
    if (!this.preview) return;
    URL.revokeObjectURL(this.preview.url);
    this.preview.img.remove();
    this.preview = undefined;
    delete this.root.dataset.preview;
  }

  /** Ask the relay to cancel; the card says what came of it. */
  async cancel(): Promise<void> {
    const job = this.job;
    if (!job || this.cancelButton.disabled) return;
    this.cancelButton.disabled = true;
    this.cancelButton.setAttribute('aria-busy', 'true');
    let outcome: CancelOutcome;
    try {
      outcome = await cancelJob(job.jobId);
    } catch (err) {
      const e = err instanceof ApiError ? err : new ApiError('UNREACHABLE', String(err), 0);
      this.cancelButton.disabled = false;
      this.cancelButton.removeAttribute('aria-busy');
      this.sayCancel(describeCancel({ outcome: 'error', code: e.code, message: e.message }));
      return;
    }
    this.cancelButton.removeAttribute('aria-busy');
    if (outcome.outcome === 'cancelled') {
      this.cancelled();
      return;
    }
    // Too late (or unknown): the card goes on to whatever the job did.
    this.cancelButton.remove();
    this.sayCancel(describeCancel(outcome));
  }

  private sayCancel(text: string): void {
    this.cancelNote.textContent = text;
    this.cancelNote.hidden = false;
  }

  /** Cancelled (said once, whether the DELETE's answer or the socket says it first). */
  private cancelled(): void {
    if (this.root.dataset.state === 'cancelled' || this.root.dataset.state === 'done') return;
    this.follower?.stop();
    clearInterval(this.ticker);
    this.dropPreview();
    this.root.dataset.state = 'cancelled';
    this.setStatus('Cancelled', undefined);
    this.elapsed.textContent = '';
    this.bar.hidden = true;
    this.cancelNote.hidden = true;
    this.frame.style.aspectRatio = 'auto';
    this.frame.classList.remove('grid');
    this.frame.style.gridTemplateColumns = '';
    this.frame.style.gridTemplateRows = '';
    this.frame.style.maxWidth = '';
    const icon = el('div', 'frame-cancelled', '×');
    icon.setAttribute('aria-hidden', 'true');
    this.frame.replaceChildren(icon);
    const again = button('button', 'Run again', `Run again: ${this.request.prompt}`);
    again.addEventListener('click', () => void this.retry());
    this.actions.replaceChildren(again);
    this.loop.replaceChildren();
  }

  private altText(image: FollowedImage): string {
    const alt = imageAltText(this.request.prompt, ALT_TEXT_MAX.web);
    return image.count > 1 ? `${alt} (image ${image.index + 1} of ${image.count})` : alt;
  }

  /** Put one arrived image into its tile (the grid is relaid out for what is delivered). */
  private showImage(image: FollowedImage): void {
    if (this.root.dataset.state === 'cancelled') return;
    if (this.shown.length === 0) {
      this.dropPreview();
      this.size = { width: image.width, height: image.height };
      this.placeholders(image.count);
    }
    const url = URL.createObjectURL(image.blob);
    const img = el('img', 'result-image');
    img.src = url;
    img.alt = this.altText(image);
    img.width = image.width;
    img.height = image.height;
    const tile = button('tile', '');
    tile.dataset.index = String(image.index);
    tile.dataset.seed = String(image.seed);
    tile.title = `Seed ${image.seed} · ${image.width} × ${image.height}`;
    tile.append(img);
    const which = image.count > 1 ? `Image ${image.index + 1} of ${image.count}` : 'The image';
    const openLabel = `${which}, seed ${image.seed}: open full size`;
    let hidden = image.spoiler;
    if (image.spoiler) {
      // Flagged by this site's safety setting: blurred until the viewer chooses to see it.
      tile.classList.add('spoiler');
      tile.setAttribute(
        'aria-label',
        `${image.count > 1 ? `${which}, flagged` : 'Flagged'} by the safety check: show the image`,
      );
      tile.append(el('span', 'spoiler-label', 'Flagged by the safety check · click to show'));
    } else tile.setAttribute('aria-label', openLabel);
    if (image.count > 1) {
      const badge = el('span', 'tile-badge', String(image.index + 1));
      badge.setAttribute('aria-hidden', 'true');
      tile.append(badge);
    }
    tile.addEventListener('click', () => {
      if (hidden) {
        hidden = false;
        tile.classList.add('revealed');
        tile.querySelector('.spoiler-label')?.remove();
        tile.setAttribute('aria-label', openLabel);
        return;
      }
      this.host.view(
        {
          url,
          alt: img.alt,
          caption: `${which} · seed ${image.seed} · ${image.width} × ${image.height}`,
          width: image.width,
          height: image.height,
          fileName: fileNameOf(image),
        },
        tile,
      );
    });
    const slot = this.frame.children[image.index];
    if (slot) slot.replaceWith(tile);
    else this.frame.append(tile);
    this.shown.push({ image, url, tile });
  }

  private done(count: number, withheld: Withheld | undefined, via: string): void {
    if (this.root.dataset.state === 'cancelled') return;
    clearInterval(this.ticker);
    const seconds = ((performance.now() - this.startedAt) / 1000).toFixed(1);
    this.root.dataset.state = 'done';
    this.root.dataset.via = via;
    this.root.dataset.count = String(count);
    this.setStatus(`Done in ${seconds} s`, 100);
    this.elapsed.textContent = '';
    // Placeholders for images that never came (withheld) go.
    for (const pending of [...this.frame.querySelectorAll('.tile.pending')]) pending.remove();
    this.layout(count);
    const shown = [...this.shown].sort((a, b) => a.image.index - b.image.index);
    const demo = this.job?.demo ?? false;
    this.meta.textContent = this.metaText(
      shown.map((s) => s.image.seed),
      demo,
    );
    const line = withheldLine(withheld);
    if (line) this.meta.textContent += ` · ${line}`;
    this.actions.replaceChildren(...this.cardActions(shown));
    this.loop.replaceChildren(...this.loopActions(shown));
  }

  /** Download and "Use seed" for a single image. */
  private cardActions(shown: Shown[]): HTMLElement[] {
    const only = shown.length === 1 ? shown[0] : undefined;
    if (!only) return [];
    const download = el('a', 'button', 'Download');
    download.href = only.url;
    download.download = fileNameOf(only.image);
    const reuse = button('button subtle', 'Use seed');
    reuse.title = 'Put this prompt and seed back in the form';
    reuse.addEventListener('click', () =>
      this.host.useSeed(this.request.prompt, only.image.seed, this.request.aspect),
    );
    return this.request.task === 'upscale' ? [download] : [download, reuse];
  }

  /** The source of a vary or upscale made from one of this card's images. */
  private sourceOf(s: Shown, count: number): SourceImage {
    return {
      blob: s.image.blob,
      width: s.image.width,
      height: s.image.height,
      ...(this.job ? { jobId: this.job.jobId } : {}),
      index: s.image.index,
      seed: s.image.seed,
      label: count > 1 ? `image ${s.image.index + 1}` : 'the image',
    };
  }

  private upscale(s: Shown, count: number): Promise<boolean> {
    return this.host.submit({
      prompt: this.request.prompt,
      task: 'upscale',
      ...(this.request.model ? { model: this.request.model } : {}),
      source: this.sourceOf(s, count),
    });
  }

  private vary(s: Shown, count: number, preset: VaryPreset): Promise<boolean> {
    return this.host.submit({
      prompt: this.request.prompt,
      task: 'vary',
      strength: preset,
      count: this.host.count(),
      ...(this.request.model ? { model: this.request.model } : {}),
      source: this.sourceOf(s, count),
    });
  }

  /** Disable a button while the click it got is being sent. */
  private busy(b: HTMLButtonElement, run: () => Promise<unknown>): void {
    b.addEventListener('click', () => {
      if (b.getAttribute('aria-busy') === 'true') return;
      b.setAttribute('aria-busy', 'true');
      void run().finally(() => b.removeAttribute('aria-busy'));
    });
  }

  private rerollButton(): HTMLButtonElement {
    const reroll = button('button', 'Re-roll', `Re-roll: ${this.request.prompt}, with new seeds`);
    reroll.title = 'Same prompt, new seeds';
    this.busy(reroll, () => {
      const { seed: _old, ...rest } = this.request;
      return this.host.submit(rest);
    });
    return reroll;
  }

  /** U1–U4, V1–V4 with a subtle/strong choice, Re-roll; or a single image's Vary and Upscale. */
  private loopActions(shown: Shown[]): HTMLElement[] {
    const count = shown.length;
    if (count === 0) return [];
    const out: HTMLElement[] = [];
    if (count > 1) {
      const ups = el('div', 'loop-row');
      ups.append(el('span', 'loop-label', 'Upscale'));
      for (const s of shown) {
        const n = s.image.index + 1;
        const u = button('button loop-button', `U${n}`, `U${n}: upscale image ${n}`);
        const { width, height } = s.image;
        const bigger = upscaleWithin(
          width,
          height,
          this.host.maxSide(),
          this.host.upscaleMaxSide(),
        );
        u.title = bigger
          ? `Upscale image ${n} 2× (to ${bigger.width} × ${bigger.height})`
          : noUpscaleReason(n, width, height, this.host.maxSide(), this.host.upscaleMaxSide());
        u.disabled = bigger === undefined;
        this.busy(u, () => this.upscale(s, count));
        ups.append(u);
      }
      const varies = el('div', 'loop-row');
      varies.append(el('span', 'loop-label', 'Vary'));
      let preset = this.host.varyPreset();
      const vButtons: Array<[HTMLButtonElement, number]> = [];
      const label = (n: number) => `V${n}: vary image ${n} (${preset})`;
      for (const s of shown) {
        const n = s.image.index + 1;
        const v = button('button loop-button', `V${n}`, label(n));
        v.title = `Vary image ${n}`;
        this.busy(v, () => this.vary(s, count, preset));
        vButtons.push([v, n]);
        varies.append(v);
      }
      const choice = el('fieldset', 'vary-choice');
      const legend = el('legend', 'visually-hidden', 'Vary strength');
      choice.append(legend);
      for (const option of ['subtle', 'strong'] as const) {
        const chip = el('label', 'chip small');
        const input = el('input');
        input.type = 'radio';
        input.name = `vary-${this.serial}`;
        input.value = option;
        input.checked = option === preset;
        input.addEventListener('change', () => {
          if (!input.checked) return;
          preset = option;
          this.host.rememberVaryPreset(option);
          for (const [v, n] of vButtons) v.setAttribute('aria-label', label(n));
        });
        chip.append(input, el('span', 'chip-text', option === 'subtle' ? 'Subtle' : 'Strong'));
        choice.append(chip);
      }
      varies.append(choice);
      out.push(ups, varies);
    } else {
      const s = shown[0]!;
      const row = el('div', 'loop-row');
      for (const preset of ['subtle', 'strong'] as const) {
        const name = preset === 'subtle' ? 'Vary (Subtle)' : 'Vary (Strong)';
        const v = button('button loop-button', name);
        this.busy(v, () => this.vary(s, count, preset));
        row.append(v);
      }
      const bigger = upscaleWithin(
        s.image.width,
        s.image.height,
        this.host.maxSide(),
        this.host.upscaleMaxSide(),
      );
      if (bigger) {
        const u = button(
          'button loop-button',
          'Upscale 2×',
          `Upscale 2× (to ${bigger.width} × ${bigger.height})`,
        );
        this.busy(u, () => this.upscale(s, count));
        row.append(u);
      }
      out.push(row);
    }
    if (this.request.task !== 'upscale') {
      const last = out.at(-1)!;
      last.append(this.rerollButton());
    }
    return out;
  }

  private failed(code: string, message: string): void {
    clearInterval(this.ticker);
    this.dropPreview();
    this.root.dataset.state = 'failed';
    this.root.dataset.errorCode = code;
    this.setStatus(describeJobFailure(code), 0);
    this.elapsed.textContent = '';
    this.bar.hidden = true;
    this.frame.style.aspectRatio = 'auto';
    this.frame.classList.remove('grid');
    this.frame.style.gridTemplateColumns = '';
    this.frame.style.gridTemplateRows = '';
    this.frame.style.maxWidth = '';
    const icon = el('div', 'frame-error', '!');
    icon.setAttribute('aria-hidden', 'true');
    this.frame.replaceChildren(icon);
    const detail = el('p', 'error-detail', `Details: ${message} (${code})`);
    const retry = button('button primary', 'Try again');
    retry.addEventListener('click', () => void this.retry());
    this.actions.replaceChildren(retry);
    this.loop.replaceChildren();
    this.meta.replaceChildren(detail);
  }

  /** Send the same request again in this card. */
  async retry(): Promise<void> {
    this.follower?.stop();
    delete this.root.dataset.errorCode;
    delete this.root.dataset.via;
    delete this.root.dataset.transport;
    delete this.root.dataset.count;
    await this.host.rerun(this);
  }

  /** The status line, and the bar: a real percentage, or indeterminate (`undefined`). */
  private setStatus(text: string, percent: number | undefined, valueText?: string): void {
    if (this.status.textContent !== text) this.status.textContent = text;
    const fill = this.bar.firstElementChild as HTMLElement;
    if (percent === undefined) {
      this.bar.removeAttribute('aria-valuenow');
      this.bar.removeAttribute('aria-valuetext');
      this.bar.classList.add('indeterminate');
      fill.style.width = '';
      this.percent.textContent = '';
    } else {
      this.bar.setAttribute('aria-valuenow', String(percent));
      if (valueText) this.bar.setAttribute('aria-valuetext', valueText);
      else this.bar.removeAttribute('aria-valuetext');
      this.bar.classList.remove('indeterminate');
      fill.style.width = `${percent}%`;
      this.percent.textContent = percent < 100 ? `${percent}%` : '';
    }
  }

  private tick(): void {
    this.elapsed.textContent = formatElapsed(performance.now() - this.startedAt);
  }

  private freeImages(): void {
    for (const s of this.shown) URL.revokeObjectURL(s.url);
    this.shown = [];
  }

  /** Free the images and stop following (when dropped from the history). */
  dispose(): void {
    this.follower?.stop();
    clearInterval(this.ticker);
    this.dropPreview();
    this.freeImages();
    this.root.remove();
  }
}

function fileNameOf(image: FollowedImage): string {
  const ext = image.blob.type.split('/')[1]?.replace('jpeg', 'jpg') ?? 'png';
  return `imagine-${image.seed}.${ext}`;
}
