/**
 * The image classifier behind output safety: NSFWJS (MobileNetV2 or InceptionV3 weights that ship
 * inside the `nsfwjs` npm package) on TensorFlow.js with the WebAssembly backend (or the plain
 * JavaScript one), on the CPU, offline. The only file that imports tfjs or nsfwjs.
 *
 * The model is loaded lazily, on the first image, and only by a worker whose safety is not `off`.
 */
import sharp from 'sharp';
import { ImagineError } from '../../contracts/errors.ts';
import type { SafetyBackend, SafetyModel } from '../../contracts/safety.ts';

/** The five classes NSFWJS scores. */
export const NSFW_CLASSES = ['Drawing', 'Hentai', 'Neutral', 'Porn', 'Sexy'] as const;
/** One NSFWJS class. */
export type NsfwClass = (typeof NSFW_CLASSES)[number];

/** What the classifier says about one image. */
export interface Classification {
  /** Probability the image is not safe for a general audience: Porn + Hentai + Sexy, 0–1. */
  score: number;
  /** Every class's probability. */
  classes: Record<NsfwClass, number>;
  /** Milliseconds for decode + inference. */
  ms: number;
}

/** Judges images. */
export interface ImageClassifier {
  /** `nsfwjs/mobilenet_v2@wasm`, for logs and metrics. */
  readonly name: string;
  /** Whether the model is in memory (it loads on first use). */
  readonly loaded: boolean;
  /** Load the model now (otherwise the first image does). */
  warm(): Promise<void>;
  /** Classify an encoded image (PNG, JPEG, WebP). Throws `SAFETY_CHECK_FAILED`. */
  classify(image: Buffer): Promise<Classification>;
}

/** Options of {@link createNsfwClassifier}. */
export interface NsfwClassifierOptions {
  model?: SafetyModel;
  backend?: SafetyBackend;
}

interface Loaded {
  tf: typeof import('@tensorflow/tfjs');
  net: import('nsfwjs').NSFWJS;
  size: number;
}

interface ModelImports {
  /** `graph` for graph models (MobileNetV2Mid); layers models otherwise. */
  type: string | undefined;
  modelJson: () => Promise<{ default: import('@tensorflow/tfjs').io.ModelJSON }>;
  weightBundles: Array<() => Promise<{ default: string }>>;
}

async function modelImports(model: SafetyModel): Promise<{ imports: ModelImports; size: number }> {
  // Each model's weights are base64 in JS modules inside the package: nothing is fetched.
  switch (model) {
    case 'mobilenet_v2':
      return { imports: await import('nsfwjs/models/mobilenet_v2').then(asImports), size: 224 };
    case 'mobilenet_v2_mid':
      return {
        imports: await import('nsfwjs/models/mobilenet_v2_mid').then(asImports),
        size: 224,
      };
    case 'inception_v3':
      return { imports: await import('nsfwjs/models/inception_v3').then(asImports), size: 299 };
  }
}

function asImports(mod: Record<string, unknown>): ModelImports {
  const def = Object.values(mod)[0] as Omit<ModelImports, 'type'> & { options?: { type?: string } };
  return { type: def.options?.type, modelJson: def.modelJson, weightBundles: def.weightBundles };
}

// One tfjs engine per process: its backend is global, so the first classifier's choice holds.
let engine: Promise<typeof import('@tensorflow/tfjs')> | undefined;
let engineBackend: SafetyBackend | undefined;

async function tfWith(backend: SafetyBackend): Promise<typeof import('@tensorflow/tfjs')> {
  if (engine && engineBackend !== backend)
    throw new ImagineError(
      'SAFETY_CHECK_FAILED',
      `tfjs already runs on ${engineBackend}; one backend per process`,
    );
  engineBackend = backend;
  engine ??= (async () => {
    const tf = await import('@tensorflow/tfjs');
    if (backend === 'wasm') await import('@tensorflow/tfjs-backend-wasm');
    // Production mode: no debug checks, and no "install tfjs-node" banner on stderr.
    tf.enableProdMode();
    await tf.setBackend(backend);
    await tf.ready();
    return tf;
  })();
  return engine;
}

async function load(model: SafetyModel, backend: SafetyBackend): Promise<Loaded> {
  const tf = await tfWith(backend);
  const { NSFWJS } = await import('nsfwjs');
  const { imports, size } = await modelImports(model);
  const modelJson = (await imports.modelJson()).default;
  const shards = await Promise.all(imports.weightBundles.map(async (b) => (await b()).default));
  // An IOHandler over the bundled JSON and base64 shards (in manifest order).
  const handler: import('@tensorflow/tfjs').io.IOHandler = {
    load: async () => {
      const weightSpecs = modelJson.weightsManifest.flatMap((g) => g.weights);
      const weightData = Buffer.concat(shards.map((s) => Buffer.from(s, 'base64')));
      const artifacts: import('@tensorflow/tfjs').io.ModelArtifacts = {
        modelTopology: modelJson.modelTopology,
        weightSpecs,
        weightData: weightData.buffer.slice(
          weightData.byteOffset,
          weightData.byteOffset + weightData.byteLength,
        ) as ArrayBuffer,
      };
      if (modelJson.format !== undefined) artifacts.format = modelJson.format;
      return artifacts;
    },
  };
  const net = new NSFWJS(
    handler,
    imports.type === undefined ? { size } : { size, type: imports.type },
  );
  await net.load();
  return { tf, net, size };
}

/** The NSFWJS classifier (lazy: nothing is loaded until the first image or `warm()`). */
export function createNsfwClassifier(opts: NsfwClassifierOptions = {}): ImageClassifier {
  const model = opts.model ?? 'mobilenet_v2';
  const backend = opts.backend ?? 'wasm';
  let loading: Promise<Loaded> | undefined;
  let ready = false;
  const loaded = () => {
    loading ??= load(model, backend).then(
      (l) => {
        ready = true;
        return l;
      },
      (err: unknown) => {
        loading = undefined;
        throw new ImagineError('SAFETY_CHECK_FAILED', `the safety model could not be loaded`, {
          cause: err,
        });
      },
    );
    return loading;
  };
  return {
    name: `nsfwjs/${model}@${backend}`,
    get loaded() {
      return ready;
    },
    warm: async () => {
      await loaded();
    },
    async classify(image) {
      const { tf, net, size } = await loaded();
      const started = performance.now();
      let pixels: Buffer;
      try {
        // Decoded and scaled by sharp (libvips) straight to the model's square input.
        pixels = await sharp(image, { limitInputPixels: 4096 * 4096 })
          .resize(size, size, { fit: 'fill' })
          .removeAlpha()
          .toColourspace('srgb')
          .raw()
          .toBuffer();
      } catch (err) {
        throw new ImagineError('SAFETY_CHECK_FAILED', 'the image could not be decoded', {
          cause: err,
        });
      }
      const input = tf.tensor3d(new Int32Array(pixels), [size, size, 3], 'int32');
      try {
        const predictions = await net.classify(input, NSFW_CLASSES.length);
        const classes = Object.fromEntries(NSFW_CLASSES.map((c) => [c, 0])) as Record<
          NsfwClass,
          number
        >;
        for (const p of predictions) classes[p.className as NsfwClass] = p.probability;
        const score = Math.min(1, classes.Porn + classes.Hentai + classes.Sexy);
        return { score, classes, ms: performance.now() - started };
      } finally {
        input.dispose();
      }
    },
  };
}
