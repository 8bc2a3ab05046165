/** The page: a prompt form, and a stack of result cards that follow their jobs live. */
import { ALT_TEXT_MAX, imageAltText } from '../../contracts/delivery.ts';
import {
  ASPECT_RATIOS,
  ASPECT_SIZES,
  type AspectRatio,
  PROMPT_MAX_CHARS,
} from '../../contracts/limits.ts';
import {
  ApiError,
  type Enqueued,
  enqueue,
  fetchGeneratorInfo,
  type ImagineRequest,
} from './api.ts';
import { type FollowEvent, type Follower, followJob, type Transport } from './follow.ts';
import {
  checkPrompt,
  describeJobFailure,
  describeRefusal,
  formatElapsed,
  normalisePrompt,
  parseSeed,
  promptLength,
  UNREACHABLE,
} from './messages.ts';
import { loadPrefs, savePref } from './prefs.ts';

/** Results kept in memory for the session; older ones are dropped (and their blobs freed). */
const HISTORY_LIMIT = 12;

function byId<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing from the page`);
  return el as T;
}

/** Create an element with a class and optional text (never HTML). */
function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className?: string,
  text?: string,
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

const form = byId<HTMLFormElement>('composer');
const promptBox = byId<HTMLTextAreaElement>('prompt');
const counter = byId<HTMLSpanElement>('prompt-count');
const seedBox = byId<HTMLInputElement>('seed');
const formError = byId<HTMLDivElement>('form-error');
const generateButton = byId<HTMLButtonElement>('generate');
const aspectChoices = byId<HTMLDivElement>('aspect-choices');
const results = byId<HTMLOListElement>('results');
const emptyState = byId<HTMLParagraphElement>('empty-state');
const demoNotice = byId<HTMLElement>('demo-notice');
const generatorInfo = byId<HTMLSpanElement>('generator-info');
const modelField = byId<HTMLDivElement>('model-field');
const modelBox = byId<HTMLSelectElement>('model');

// --- Aspect ratio chips -------------------------------------------------------------------

const remembered = loadPrefs();
const rememberedAspect =
  typeof remembered.aspect === 'string' && remembered.aspect in ASPECT_SIZES
    ? remembered.aspect
    : undefined;

for (const [i, aspect] of ASPECT_RATIOS.entries()) {
  const { width, height } = ASPECT_SIZES[aspect];
  const label = el('label', 'chip');
  const input = el('input');
  input.type = 'radio';
  input.name = 'aspect';
  input.value = aspect;
  input.checked = rememberedAspect === undefined ? i === 0 : aspect === rememberedAspect;
  input.addEventListener('change', () => {
    if (input.checked) savePref('aspect', aspect);
  });
  const shape = el('span', 'chip-shape');
  shape.setAttribute('aria-hidden', 'true');
  // Scale the glyph so its longer side is 16px (CSSOM styles are allowed by the CSP).
  const scale = 16 / Math.max(width, height);
  shape.style.width = `${Math.round(width * scale)}px`;
  shape.style.height = `${Math.round(height * scale)}px`;
  const text = el('span', 'chip-text', aspect);
  label.title = `${width} × ${height}`;
  label.append(input, shape, text);
  aspectChoices.append(label);
}

function selectedAspect(): AspectRatio {
  const checked = form.querySelector<HTMLInputElement>('input[name="aspect"]:checked');
  const value = checked?.value as AspectRatio | undefined;
  return value && value in ASPECT_SIZES ? value : '1:1';
}

// --- Prompt length and form errors --------------------------------------------------------

function updateCounter(): void {
  const length = promptLength(promptBox.value);
  counter.textContent = `${length.toLocaleString('en')} / ${PROMPT_MAX_CHARS.toLocaleString('en')}`;
  counter.classList.toggle('over', length > PROMPT_MAX_CHARS);
  counter.classList.toggle('near', length > PROMPT_MAX_CHARS * 0.9 && length <= PROMPT_MAX_CHARS);
  if (!formError.hidden && formError.dataset.field === 'prompt' && !checkPrompt(promptBox.value))
    clearFormError();
}

let countdown: ReturnType<typeof setInterval> | undefined;

function showFormError(message: string, field?: 'prompt' | 'seed', code?: string): void {
  clearInterval(countdown);
  formError.textContent = message;
  formError.hidden = false;
  formError.dataset.field = field ?? '';
  formError.dataset.code = code ?? '';
  promptBox.setAttribute('aria-invalid', String(field === 'prompt'));
  seedBox.setAttribute('aria-invalid', String(field === 'seed'));
  if (field === 'prompt') promptBox.focus();
  if (field === 'seed') seedBox.focus();
}

function clearFormError(): void {
  clearInterval(countdown);
  formError.hidden = true;
  formError.textContent = '';
  formError.dataset.field = '';
  formError.dataset.code = '';
  promptBox.removeAttribute('aria-invalid');
  seedBox.removeAttribute('aria-invalid');
}

/** Say a refusal; for rate limits, count down to when a retry is allowed. */
function showRefusal(err: ApiError): void {
  if (err.code === 'UNREACHABLE') {
    showFormError(UNREACHABLE, undefined, err.code);
    return;
  }
  const field = err.code === 'INVALID_PROMPT' ? 'prompt' : undefined;
  showFormError(describeRefusal(err.code, err.message, err.retryAfterSeconds), field, err.code);
  if (err.code === 'RATE_LIMITED' && err.retryAfterSeconds) {
    const until = Date.now() + err.retryAfterSeconds * 1000;
    countdown = setInterval(() => {
      if (Date.now() < until) return;
      clearInterval(countdown);
      formError.textContent = 'You can make another image now.';
    }, 500);
  }
}

// --- Demo notice ----------------------------------------------------------------------------

function showGenerator(info: { generator: string; demo: boolean }): void {
  demoNotice.hidden = !info.demo;
  generatorInfo.textContent = info.demo
    ? 'Generator: demo (abstract art, not AI)'
    : `Generator: ${info.generator}`;
}

/** The model menu, shown only when the server offers more than one model. */
function showModels(models: string[]): void {
  modelBox.replaceChildren(
    ...models.map((m) => {
      const option = document.createElement('option');
      option.value = m;
      option.textContent = m;
      return option;
    }),
  );
  modelField.hidden = models.length < 2;
}

void fetchGeneratorInfo().then((info) => {
  if (!info) return;
  showGenerator(info);
  showModels(info.models);
});

// --- Result cards ---------------------------------------------------------------------------

const TRANSPORT_NOTES: Record<Transport, string> = {
  websocket: '',
  reconnecting: 'Live connection lost; reconnecting…',
  polling: 'Live updates unavailable; checking every second instead.',
  unreachable: 'Cannot reach the server; still trying…',
};

/** One submitted prompt, from queued to its image (or its error). */
class ResultCard {
  readonly root: HTMLLIElement;
  private readonly request: ImagineRequest;
  private readonly frame: HTMLDivElement;
  private readonly status: HTMLParagraphElement;
  private readonly elapsed: HTMLSpanElement;
  private readonly bar: HTMLDivElement;
  private readonly note: HTMLParagraphElement;
  private readonly meta: HTMLParagraphElement;
  private readonly actions: HTMLDivElement;
  private follower: Follower | undefined;
  private ticker: ReturnType<typeof setInterval> | undefined;
  private startedAt = 0;
  private objectUrl: string | undefined;

  constructor(request: ImagineRequest) {
    this.request = request;
    this.root = el('li', 'card');
    this.root.setAttribute('aria-label', `Image for: ${request.prompt}`);
    this.frame = el('div', 'frame');
    const body = el('div', 'card-body');
    const prompt = el('p', 'card-prompt', request.prompt);
    const statusRow = el('div', 'status-row');
    this.status = el('p', 'status');
    this.status.setAttribute('role', 'status');
    this.status.setAttribute('aria-live', 'polite');
    this.elapsed = el('span', 'elapsed');
    this.elapsed.setAttribute('aria-hidden', 'true');
    statusRow.append(this.status, this.elapsed);
    this.bar = el('div', 'progress');
    this.bar.setAttribute('role', 'progressbar');
    this.bar.setAttribute('aria-label', 'Progress');
    this.bar.setAttribute('aria-valuemin', '0');
    this.bar.setAttribute('aria-valuemax', '100');
    this.bar.append(el('div', 'progress-fill'));
    this.note = el('p', 'transport-note');
    this.note.hidden = true;
    this.meta = el('p', 'card-meta');
    this.actions = el('div', 'card-actions');
    body.append(prompt, statusRow, this.bar, this.note, this.meta, this.actions);
    this.root.append(this.frame, body);
  }

  /** Size the placeholder like the image to come, so nothing jumps when it arrives. */
  private sizeFrame(width: number, height: number): void {
    this.frame.style.aspectRatio = `${width} / ${height}`;
  }

  /** Show the card in its "sending" state. */
  sending(): void {
    const { width, height } = ASPECT_SIZES[this.request.aspect];
    this.sizeFrame(width, height);
    this.frame.replaceChildren(el('div', 'shimmer'));
    this.root.dataset.state = 'sending';
    this.note.hidden = true;
    this.meta.textContent = '';
    this.actions.replaceChildren();
    this.setStatus('Sending…', 5);
    this.startedAt = performance.now();
    clearInterval(this.ticker);
    this.ticker = setInterval(() => this.tick(), 250);
    this.tick();
  }

  /** The server took the job: follow it. */
  follow(job: Enqueued): void {
    this.root.dataset.jobId = job.jobId;
    this.sizeFrame(job.width, job.height);
    this.meta.textContent = `Seed ${job.seed} · ${job.width} × ${job.height}${job.demo ? ' · demo' : ''}`;
    this.queued(job.position);
    this.follower = followJob({
      jobId: job.jobId,
      wsUrl: job.ws,
      statusUrl: job.status,
      imageUrl: job.image,
      onEvent: (event) => this.onEvent(event),
    });
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
    this.setStatus(`Queued, ${ahead}`, 15);
  }

  private onEvent(event: FollowEvent): void {
    switch (event.kind) {
      case 'status':
        if (event.state === 'queued') this.queued(event.position);
        else {
          this.root.dataset.state = 'generating';
          this.setStatus('Generating…', undefined);
        }
        return;
      case 'transport':
        this.root.dataset.transport = event.transport;
        this.note.textContent = TRANSPORT_NOTES[event.transport];
        this.note.hidden = event.transport === 'websocket';
        return;
      case 'image':
        this.done(event);
        return;
      case 'failed':
        this.failed(event.code, event.message);
        return;
    }
  }

  private done(event: Extract<FollowEvent, { kind: 'image' }>): void {
    clearInterval(this.ticker);
    const seconds = ((performance.now() - this.startedAt) / 1000).toFixed(1);
    this.root.dataset.state = 'done';
    this.root.dataset.via = event.via;
    this.setStatus(`Done in ${seconds} s`, 100);
    this.elapsed.textContent = '';
    this.objectUrl = URL.createObjectURL(event.blob);
    const img = el('img', 'result-image');
    img.src = this.objectUrl;
    img.alt = imageAltText(this.request.prompt, ALT_TEXT_MAX.web);
    img.width = event.width;
    img.height = event.height;
    this.sizeFrame(event.width, event.height);
    if (event.spoiler) {
      // Flagged by this site's safety setting: blurred until the viewer chooses to see it.
      const reveal = el('button', 'spoiler');
      reveal.type = 'button';
      reveal.setAttribute('aria-label', 'Flagged by the safety check: show the image');
      const label = el('span', 'spoiler-label', 'Flagged by the safety check · click to show');
      reveal.append(img, label);
      reveal.addEventListener(
        'click',
        () => {
          reveal.classList.add('revealed');
          label.remove();
          reveal.removeAttribute('aria-label');
        },
        { once: true },
      );
      this.frame.replaceChildren(reveal);
    } else this.frame.replaceChildren(img);
    const demo = this.meta.textContent?.endsWith(' · demo') ? ' · demo' : '';
    this.meta.textContent = `Seed ${event.seed} · ${event.width} × ${event.height}${demo}`;
    if (event.withheld) {
      const n = event.withheld.blocked + event.withheld.held;
      this.meta.textContent += ` · ${n} of ${event.withheld.of} images ${n === 1 ? 'was' : 'were'} withheld by this site's safety setting`;
    }

    const ext = event.blob.type.split('/')[1]?.replace('jpeg', 'jpg') ?? 'png';
    const download = el('a', 'button', 'Download');
    download.href = this.objectUrl;
    download.download = `imagine-${event.seed}.${ext}`;
    const again = el('button', 'button', 'Again');
    again.type = 'button';
    again.title = 'Same prompt, new seed';
    again.setAttribute('aria-label', `Again: ${this.request.prompt}, with a new seed`);
    again.addEventListener('click', () => {
      const { seed: _old, ...rest } = this.request;
      void submit(rest);
    });
    const reuse = el('button', 'button subtle', 'Use seed');
    reuse.type = 'button';
    reuse.title = 'Put this prompt and seed back in the form';
    reuse.addEventListener('click', () => {
      promptBox.value = this.request.prompt;
      seedBox.value = String(event.seed);
      const radio = form.querySelector<HTMLInputElement>(
        `input[name="aspect"][value="${this.request.aspect}"]`,
      );
      if (radio) radio.checked = true;
      updateCounter();
      promptBox.focus();
    });
    this.actions.replaceChildren(download, again, reuse);
  }

  private failed(code: string, message: string): void {
    clearInterval(this.ticker);
    this.root.dataset.state = 'failed';
    this.root.dataset.errorCode = code;
    this.setStatus(describeJobFailure(code), 0);
    this.elapsed.textContent = '';
    this.bar.hidden = true;
    this.frame.style.aspectRatio = 'auto';
    const icon = el('div', 'frame-error', '!');
    icon.setAttribute('aria-hidden', 'true');
    this.frame.replaceChildren(icon);
    const detail = el('p', 'error-detail', `Details: ${message} (${code})`);
    const retry = el('button', 'button primary', 'Try again');
    retry.type = 'button';
    retry.addEventListener('click', () => void this.retry());
    this.actions.replaceChildren(retry);
    this.meta.replaceChildren(detail);
  }

  /** Send the same request again in this card. */
  async retry(): Promise<void> {
    this.follower?.stop();
    this.bar.hidden = false;
    delete this.root.dataset.errorCode;
    delete this.root.dataset.via;
    delete this.root.dataset.transport;
    await run(this);
  }

  get requestToSend(): ImagineRequest {
    return this.request;
  }

  private setStatus(text: string, percent: number | undefined): void {
    this.status.textContent = text;
    const fill = this.bar.firstElementChild as HTMLElement;
    if (percent === undefined) {
      this.bar.removeAttribute('aria-valuenow');
      this.bar.classList.add('indeterminate');
      fill.style.width = '';
    } else {
      this.bar.setAttribute('aria-valuenow', String(percent));
      this.bar.classList.remove('indeterminate');
      fill.style.width = `${percent}%`;
    }
  }

  private tick(): void {
    this.elapsed.textContent = formatElapsed(performance.now() - this.startedAt);
  }

  /** Free the image and stop following (when dropped from the history). */
  dispose(): void {
    this.follower?.stop();
    clearInterval(this.ticker);
    if (this.objectUrl) URL.revokeObjectURL(this.objectUrl);
    this.root.remove();
  }
}

const cards: ResultCard[] = [];

/** Enqueue a card's request and follow it; on refusal, drop the card and say why. */
async function run(card: ResultCard): Promise<boolean> {
  card.sending();
  try {
    const job = await enqueue(card.requestToSend);
    if (job.demo) showGenerator({ generator: job.generator, demo: true });
    card.follow(job);
    return true;
  } catch (err) {
    card.discard();
    const index = cards.indexOf(card);
    if (index >= 0) cards.splice(index, 1);
    emptyState.hidden = cards.length > 0;
    showRefusal(err instanceof ApiError ? err : new ApiError('UNREACHABLE', String(err), 0));
    return false;
  }
}

let submitting = false;

/** Add a new card at the top of the history and run it. */
async function submit(request: ImagineRequest): Promise<boolean> {
  if (submitting) return false;
  submitting = true;
  generateButton.setAttribute('aria-busy', 'true');
  clearFormError();
  const card = new ResultCard(request);
  cards.unshift(card);
  results.prepend(card.root);
  emptyState.hidden = true;
  for (const old of cards.splice(HISTORY_LIMIT)) old.dispose();
  try {
    return await run(card);
  } finally {
    submitting = false;
    generateButton.removeAttribute('aria-busy');
  }
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  const problem = checkPrompt(promptBox.value);
  if (problem) return showFormError(problem, 'prompt', 'INVALID_PROMPT');
  const seed = parseSeed(seedBox.value);
  if (seed.error) return showFormError(seed.error, 'seed', 'INVALID_PARAMETERS');
  void submit({
    prompt: normalisePrompt(promptBox.value),
    aspect: selectedAspect(),
    ...(seed.seed === undefined ? {} : { seed: seed.seed }),
    ...(modelField.hidden || !modelBox.value ? {} : { model: modelBox.value }),
  });
});

promptBox.addEventListener('keydown', (event) => {
  // Enter submits; Shift+Enter is a new line; never while an IME is composing.
  if (event.key !== 'Enter' || event.shiftKey || event.isComposing) return;
  event.preventDefault();
  form.requestSubmit();
});
promptBox.addEventListener('input', updateCounter);
seedBox.addEventListener('input', () => {
  if (formError.dataset.field === 'seed' && !parseSeed(seedBox.value).error) clearFormError();
});

updateCounter();
document.documentElement.dataset.ready = 'true';
