/**
 * The full-size view of one image: a modal `<dialog>` (Escape, the Close button or a click
 * outside the image closes it; focus goes back to what opened it).
 */
import { button, el } from './dom.ts';

/** What the viewer shows. */
export interface ViewedImage {
  url: string;
  alt: string;
  caption: string;
  width: number;
  height: number;
  /** File name for the Download link. */
  fileName: string;
}

/** One dialog for the page, reused for every image. */
export class ImageViewer {
  private readonly dialog: HTMLDialogElement;
  private readonly img: HTMLImageElement;
  private readonly caption: HTMLParagraphElement;
  private readonly download: HTMLAnchorElement;
  private opener: HTMLElement | undefined;

  constructor(parent: HTMLElement) {
    this.dialog = el('dialog', 'viewer');
    this.dialog.setAttribute('aria-label', 'Full-size image');
    this.img = el('img', 'viewer-image');
    this.caption = el('p', 'viewer-caption');
    this.download = el('a', 'button', 'Download');
    const close = button('button primary', 'Close');
    close.addEventListener('click', () => this.dialog.close());
    const bar = el('div', 'viewer-bar');
    bar.append(this.caption, this.download, close);
    this.dialog.append(this.img, bar);
    // A click on the backdrop lands on the dialog itself, not on its contents.
    this.dialog.addEventListener('click', (event) => {
      if (event.target === this.dialog) this.dialog.close();
    });
    this.dialog.addEventListener('close', () => {
      this.img.removeAttribute('src');
      this.opener?.focus();
      this.opener = undefined;
    });
    parent.append(this.dialog);
  }

  /** Show an image full size; `opener` gets focus back on close. */
  open(image: ViewedImage, opener?: HTMLElement): void {
    this.opener = opener;
    this.img.src = image.url;
    this.img.alt = image.alt;
    this.img.width = image.width;
    this.img.height = image.height;
    this.caption.textContent = image.caption;
    this.download.href = image.url;
    this.download.download = image.fileName;
    if (!this.dialog.open) this.dialog.showModal();
  }
}
