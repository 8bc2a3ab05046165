/**
 * An image as input to the prompt form: chosen with the file input, dropped on the form or
 * pasted. It is checked here (type, size, that it decodes), shown as a thumbnail with a remove
 * control and a strength slider; the page uploads it when the form is sent.
 */
import { byId } from './dom.ts';
import { checkImageFile } from './messages.ts';

/** The image the form will send. */
export interface ChosenImage {
  blob: Blob;
  name: string;
  width: number;
  height: number;
}

/** Options of {@link ImageInput}. */
export interface ImageInputOptions {
  /** The relay's upload limit, when known. */
  maxBytes(): number | undefined;
  /** Say why a file cannot be used ('' clears an earlier image error). */
  onError(message: string): void;
  /** The image was chosen or removed. */
  onChange(chosen: ChosenImage | undefined): void;
  /** Strength to start the slider at, and remembering a change. */
  initialStrength: number;
  rememberStrength(value: number): void;
}

/** Strength of an image prompt: what the slider shows, in words. */
export function describeStrength(value: number): string {
  if (value <= 0.4) return `${value.toFixed(2)} · close to your image`;
  if (value >= 0.7) return `${value.toFixed(2)} · mostly the prompt`;
  return `${value.toFixed(2)} · a balance`;
}

/** The form's image input. */
export class ImageInput {
  private readonly opts: ImageInputOptions;
  private readonly zone = byId<HTMLDivElement>('image-drop');
  private readonly file = byId<HTMLInputElement>('image-file');
  private readonly chosenBox = byId<HTMLDivElement>('image-chosen');
  private readonly thumb = byId<HTMLImageElement>('image-thumb');
  private readonly name = byId<HTMLParagraphElement>('image-name');
  private readonly slider = byId<HTMLInputElement>('strength');
  private readonly sliderValue = byId<HTMLOutputElement>('strength-value');
  private readonly remove = byId<HTMLButtonElement>('image-remove');
  private current: ChosenImage | undefined;
  private thumbUrl: string | undefined;
  /** Which take() is the latest (a slow decode must not overwrite a later choice). */
  private generation = 0;

  constructor(form: HTMLFormElement, opts: ImageInputOptions) {
    this.opts = opts;
    this.slider.value = String(opts.initialStrength);
    this.showStrength();
    this.slider.addEventListener('input', () => {
      this.showStrength();
      opts.rememberStrength(this.strength);
    });
    this.file.addEventListener('change', () => {
      const f = this.file.files?.[0];
      if (f) void this.take(f);
    });
    this.remove.addEventListener('click', () => {
      this.clear();
      this.file.focus();
    });
    form.addEventListener('dragover', (event) => {
      if (!event.dataTransfer?.types.includes('Files')) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = 'copy';
      this.zone.classList.add('dragging');
    });
    form.addEventListener('dragleave', (event) => {
      if (event.target === form || !form.contains(event.relatedTarget as Node | null))
        this.zone.classList.remove('dragging');
    });
    form.addEventListener('drop', (event) => {
      const f = event.dataTransfer?.files[0];
      this.zone.classList.remove('dragging');
      if (!f) return;
      event.preventDefault();
      void this.take(f);
    });
    // A pasted image (a screenshot, a copied image) anywhere on the page; pasted text is left be.
    document.addEventListener('paste', (event) => {
      const f = [...(event.clipboardData?.files ?? [])][0];
      if (!f) return;
      event.preventDefault();
      void this.take(f);
    });
  }

  /** The image chosen, if any. */
  get chosen(): ChosenImage | undefined {
    return this.current;
  }

  /** The slider's strength, in (0, 1]. */
  get strength(): number {
    const v = Number(this.slider.value);
    return Number.isFinite(v) && v > 0 && v <= 1 ? v : 0.6;
  }

  private showStrength(): void {
    this.sliderValue.textContent = describeStrength(this.strength);
  }

  /** Check a file and, when it is usable, make it the form's image. */
  async take(file: File): Promise<void> {
    const generation = ++this.generation;
    const problem = checkImageFile(file, this.opts.maxBytes());
    if (problem) {
      this.file.value = '';
      this.opts.onError(problem);
      return;
    }
    let size: { width: number; height: number };
    try {
      const bitmap = await createImageBitmap(file);
      size = { width: bitmap.width, height: bitmap.height };
      bitmap.close();
    } catch {
      if (generation !== this.generation) return;
      this.file.value = '';
      this.opts.onError(
        `${file.name ? `“${file.name}”` : 'That file'} could not be read as an image. Choose a PNG, JPEG or WebP image.`,
      );
      return;
    }
    if (generation !== this.generation) return;
    this.opts.onError('');
    this.setChosen({ blob: file, name: file.name || 'pasted image', ...size });
  }

  private setChosen(chosen: ChosenImage | undefined): void {
    if (this.thumbUrl) URL.revokeObjectURL(this.thumbUrl);
    this.thumbUrl = undefined;
    this.current = chosen;
    if (chosen) {
      this.thumbUrl = URL.createObjectURL(chosen.blob);
      this.thumb.src = this.thumbUrl;
      this.thumb.alt = `Your image: ${chosen.name}`;
      this.name.textContent = `${chosen.name} · ${chosen.width} × ${chosen.height}`;
    } else {
      this.thumb.removeAttribute('src');
      this.thumb.alt = '';
      this.name.textContent = '';
      this.file.value = '';
    }
    this.chosenBox.hidden = !chosen;
    this.zone.hidden = Boolean(chosen);
    this.opts.onChange(chosen);
  }

  /** Forget the chosen image. */
  clear(): void {
    this.generation++;
    this.setChosen(undefined);
  }
}
