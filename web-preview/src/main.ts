/** The page: a prompt form, and a stack of result cards that follow their jobs live. */
import type { Quota } from '../../contracts/errors.ts';
import {
  ASPECT_RATIOS,
  ASPECT_SIZES,
  type AspectRatio,
  IMAGE_COUNT_DEFAULT,
  IMAGE_COUNT_MAX,
  PROMPT_MAX_CHARS,
  UPSCALE_MAX_SIDE,
  type VaryPreset,
} from '../../contracts/limits.ts';
import {
  ApiError,
  type Enqueued,
  enqueue,
  fetchGeneratorInfo,
  type ImagineRequest,
  type InputRef,
  imageLink,
  uploadImage,
} from './api.ts';
import { type CardHost, type PageRequest, ResultCard, type SourceImage } from './card.ts';
import { byId, el } from './dom.ts';
import { ImageInput } from './input-image.ts';
import {
  checkPrompt,
  describeQuotaLeft,
  describeRefusal,
  describeUploadRefusal,
  describeWindow,
  normalisePrompt,
  parseSeed,
  promptLength,
  UNREACHABLE,
} from './messages.ts';
import { loadPrefs, savePref } from './prefs.ts';
import { ImageViewer } from './viewer.ts';

/** Results kept in memory for the session; older ones are dropped (and their blobs freed). */
const HISTORY_LIMIT = 12;

const form = byId<HTMLFormElement>('composer');
const promptBox = byId<HTMLTextAreaElement>('prompt');
const counter = byId<HTMLSpanElement>('prompt-count');
const seedBox = byId<HTMLInputElement>('seed');
const formError = byId<HTMLDivElement>('form-error');
const quotaLeft = byId<HTMLParagraphElement>('quota-left');
const generateButton = byId<HTMLButtonElement>('generate');
const aspectSet = byId<HTMLFieldSetElement>('aspects');
const aspectChoices = byId<HTMLDivElement>('aspect-choices');
const countChoices = byId<HTMLDivElement>('count-choices');
const results = byId<HTMLOListElement>('results');
const emptyState = byId<HTMLParagraphElement>('empty-state');
const demoNotice = byId<HTMLElement>('demo-notice');
const generatorInfo = byId<HTMLSpanElement>('generator-info');
const modelField = byId<HTMLDivElement>('model-field');
const modelBox = byId<HTMLSelectElement>('model');
const viewer = new ImageViewer(document.body);

// --- Aspect ratio chips -------------------------------------------------------------------

const remembered = loadPrefs();
const rememberedCount =
  typeof remembered.count === 'number' &&
  Number.isInteger(remembered.count) &&
  remembered.count >= 1 &&
  remembered.count <= IMAGE_COUNT_MAX
    ? remembered.count
    : IMAGE_COUNT_DEFAULT;
let varyPreset: VaryPreset = remembered.vary === 'subtle' ? 'subtle' : 'strong';
const rememberedStrength =
  typeof remembered.strength === 'number' && remembered.strength > 0 && remembered.strength <= 1
    ? remembered.strength
    : 0.6;
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

// --- Number of images ---------------------------------------------------------------------

for (let n = 1; n <= IMAGE_COUNT_MAX; n++) {
  const label = el('label', 'chip');
  const input = el('input');
  input.type = 'radio';
  input.name = 'count';
  input.value = String(n);
  input.checked = n === rememberedCount;
  input.setAttribute('aria-label', `${n} ${n === 1 ? 'image' : 'images'}`);
  input.addEventListener('change', () => {
    if (input.checked) savePref('count', n);
  });
  label.append(input, el('span', 'chip-text', String(n)));
  countChoices.append(label);
}

function selectedCount(): number {
  const checked = form.querySelector<HTMLInputElement>('input[name="count"]:checked');
  const n = Number(checked?.value);
  return Number.isInteger(n) && n >= 1 && n <= IMAGE_COUNT_MAX ? n : IMAGE_COUNT_DEFAULT;
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

function showFormError(message: string, field?: 'prompt' | 'seed' | 'image', code?: string): void {
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
  showFormError(
    describeRefusal(err.code, err.message, err.retryAfterSeconds, err.quota),
    field,
    err.code,
  );
  const wait = err.retryAfterSeconds ?? err.quota?.resetSeconds;
  if (err.code === 'RATE_LIMITED' && wait) {
    const until = Date.now() + wait * 1000;
    const quota = err.quota;
    countdown = setInterval(() => {
      if (Date.now() < until) return;
      clearInterval(countdown);
      formError.textContent = quota
        ? `You can make images again now (${quota.of === 'user' ? 'your' : "this site's"} ${quota.limit} ${describeWindow(quota.windowSeconds)}).`
        : 'You can make another image now.';
    }, 500);
  }
}

/** After each accepted job, what is left of the images per window (hidden when none counts). */
function showQuotaLeft(quota: Quota | undefined): void {
  quotaLeft.hidden = quota === undefined;
  quotaLeft.textContent = quota ? describeQuotaLeft(quota) : '';
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

/** The relay's upload limit and largest image side, once /healthz has said them. */
let inputImageMaxBytes: number | undefined;
let maxImageSide: number = UPSCALE_MAX_SIDE;
let upscaleMaxSide: number = UPSCALE_MAX_SIDE;

void fetchGeneratorInfo().then((info) => {
  if (!info) return;
  showGenerator(info);
  showModels(info.models);
  inputImageMaxBytes = info.inputImageMaxBytes;
  if (info.maxImageSide) maxImageSide = Math.min(UPSCALE_MAX_SIDE, info.maxImageSide);
  if (info.upscaleMaxSide !== undefined)
    upscaleMaxSide = Math.min(UPSCALE_MAX_SIDE, info.upscaleMaxSide);
  document.documentElement.dataset.server = 'known';
});

// --- Image as input -------------------------------------------------------------------------

const imageInput = new ImageInput(form, {
  maxBytes: () => inputImageMaxBytes,
  onError: (message) => {
    if (message) showFormError(message, 'image', 'INVALID_IMAGE');
    else if (formError.dataset.field === 'image') clearFormError();
  },
  onChange: (chosen) => {
    // A vary keeps its input's shape: the aspect choice does not apply.
    aspectSet.disabled = Boolean(chosen);
    form.dataset.image = chosen ? 'true' : 'false';
  },
  initialStrength: rememberedStrength,
  rememberStrength: (value) => savePref('strength', value),
});

// --- Result cards ---------------------------------------------------------------------------

/**
 * A signed link to a source image: the page's own copy sent to `POST /uploads`; when that is
 * refused and the image is one of our results still in the relay's buffer, a link to it there.
 */
async function linkToSource(source: SourceImage): Promise<InputRef> {
  let url: string;
  try {
    url = (await uploadImage(source.blob)).url;
  } catch (err) {
    if (source.jobId === undefined || source.index === undefined) throw err;
    try {
      url = (await imageLink(source.jobId, source.index)).url;
    } catch {
      throw err;
    }
  }
  return {
    image: { kind: 'url', url },
    ...(source.jobId === undefined ? {} : { jobId: source.jobId }),
    ...(source.index === undefined ? {} : { index: source.index }),
    ...(source.seed === undefined ? {} : { seed: source.seed }),
    width: source.width,
    height: source.height,
  };
}

/** The body `POST /enqueue` gets for a card's request (its source image uploaded first). */
async function toEnqueue(req: PageRequest): Promise<ImagineRequest> {
  const body: ImagineRequest = {
    prompt: req.prompt,
    ...(req.task === 'generate' ? {} : { task: req.task }),
    ...(req.aspect === undefined ? {} : { aspect: req.aspect }),
    ...(req.count === undefined || req.task === 'upscale' ? {} : { count: req.count }),
    ...(req.strength === undefined ? {} : { strength: req.strength }),
    ...(req.seed === undefined ? {} : { seed: req.seed }),
    ...(req.model === undefined ? {} : { model: req.model }),
  };
  if (req.source) body.input = await linkToSource(req.source);
  return body;
}

/** Thrown when the relay refused the source image itself. */
class UploadRefused extends Error {
  readonly refusal: ApiError;
  constructor(refusal: ApiError) {
    super(refusal.message);
    this.refusal = refusal;
  }
}

const cards: ResultCard[] = [];

/** Enqueue a card's request and follow it; on refusal, drop the card and say why. */
async function run(card: ResultCard): Promise<boolean> {
  card.sending();
  try {
    let body: ImagineRequest;
    try {
      body = await toEnqueue(card.request);
    } catch (err) {
      throw new UploadRefused(
        err instanceof ApiError ? err : new ApiError('UNREACHABLE', String(err), 0),
      );
    }
    const job: Enqueued = await enqueue(body);
    if (job.demo) showGenerator({ generator: job.generator, demo: true });
    showQuotaLeft(job.quota);
    card.follow(job);
    return true;
  } catch (err) {
    card.discard();
    // A refusal says what is left itself.
    showQuotaLeft(undefined);
    const index = cards.indexOf(card);
    if (index >= 0) cards.splice(index, 1);
    emptyState.hidden = cards.length > 0;
    if (err instanceof UploadRefused)
      showFormError(
        describeUploadRefusal(err.refusal.code, err.refusal.message, inputImageMaxBytes),
        card.request.source?.label === 'your image' ? 'image' : undefined,
        err.refusal.code,
      );
    else showRefusal(err instanceof ApiError ? err : new ApiError('UNREACHABLE', String(err), 0));
    return false;
  }
}

const host: CardHost = {
  submit: (request) => submit(request),
  rerun: async (card) => {
    await run(card);
  },
  useSeed: (prompt, seed, aspect) => {
    promptBox.value = prompt;
    seedBox.value = String(seed);
    if (aspect) {
      const radio = form.querySelector<HTMLInputElement>(`input[name="aspect"][value="${aspect}"]`);
      if (radio) radio.checked = true;
    }
    updateCounter();
    promptBox.focus();
  },
  view: (image, opener) => viewer.open(image, opener),
  maxSide: () => maxImageSide,
  upscaleMaxSide: () => upscaleMaxSide,
  count: () => selectedCount(),
  varyPreset: () => varyPreset,
  rememberVaryPreset: (preset) => {
    varyPreset = preset;
    savePref('vary', preset);
  },
};

/** Add a new card at the top of the history and run it. */
async function submit(request: PageRequest): Promise<boolean> {
  clearFormError();
  const card = new ResultCard(request, host);
  cards.unshift(card);
  results.prepend(card.root);
  emptyState.hidden = true;
  for (const old of cards.splice(HISTORY_LIMIT)) old.dispose();
  return run(card);
}

let submitting = false;

/** The form's own submission: one at a time (Enter held down sends one request). */
async function submitForm(request: PageRequest): Promise<void> {
  if (submitting) return;
  submitting = true;
  generateButton.setAttribute('aria-busy', 'true');
  try {
    await submit(request);
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
  const chosen = imageInput.chosen;
  void submitForm({
    prompt: normalisePrompt(promptBox.value),
    task: chosen ? 'vary' : 'generate',
    ...(chosen
      ? {
          strength: imageInput.strength,
          source: {
            blob: chosen.blob,
            width: chosen.width,
            height: chosen.height,
            label: 'your image',
          },
        }
      : { aspect: selectedAspect() }),
    count: selectedCount(),
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
