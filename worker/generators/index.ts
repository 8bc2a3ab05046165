/**
 * Pick the generator named by configuration: one backend, or a router over `GENERATORS`. Each
 * adapter (and the router, with its circuit breakers and metrics) is imported only when the
 * configuration names it: a demo worker holds no HTTP adapters, cockatiel or prom-client.
 */
import { type BackendSpec, backendCapability } from '../../contracts/backends.ts';
import type { Config } from '../../contracts/config.ts';
import type { Generator } from '../generator.ts';
import type { LoadedWorkflow } from './comfyui-workflow.ts';
import type { GeneratorRouter, RoutedBackend } from './router.ts';

/** Strength of a vary when the request gives none (A1111 `denoising_strength`, ComfyUI `denoise`). */
export const DEFAULT_VARY_STRENGTH = 0.6;

/** The generator for a configuration. */
export async function generatorFromConfig(config: Readonly<Config>): Promise<Generator> {
  if (config.GENERATORS) return routerFromConfig(config, config.GENERATORS);
  return backendFromSpec(config, { name: config.GENERATOR, type: config.GENERATOR });
}

/** The router over the `GENERATORS` list. */
export async function routerFromConfig(
  config: Readonly<Config>,
  specs: readonly BackendSpec[],
): Promise<GeneratorRouter> {
  const { GeneratorRouter } = await import('./router.ts');
  const backends: RoutedBackend[] = [];
  // One after the other: a spec's configuration error names the first bad entry.
  for (const spec of specs)
    backends.push({
      name: spec.name,
      type: spec.type,
      generator: await backendFromSpec(config, spec),
      priority: spec.priority,
      weight: spec.weight,
      ...backendCapability(spec, config),
    });
  return new GeneratorRouter({
    backends,
    failuresToOpen: config.GENERATOR_FAILURES_TO_OPEN,
    cooldownMs: config.GENERATOR_COOLDOWN_SECONDS * 1000,
  });
}

/** One adapter, its settings from the spec or else from that adapter's own variables. */
async function backendFromSpec(
  config: Readonly<Config>,
  spec: Pick<BackendSpec, 'name' | 'type'> & Partial<BackendSpec>,
): Promise<Generator> {
  const common = { timeoutMs: config.GENERATOR_TIMEOUT_MS, maxBytes: config.GENERATOR_MAX_BYTES };
  switch (spec.type) {
    case 'demo': {
      const { DemoGenerator } = await import('./demo.ts');
      return new DemoGenerator();
    }
    case 'a1111': {
      const { A1111Generator } = await import('./a1111.ts');
      return new A1111Generator({
        name: spec.name,
        url: spec.url ?? config.A1111_URL!,
        auth: spec.auth ?? config.A1111_AUTH,
        model: spec.model ?? config.A1111_MODEL,
        sampler: spec.sampler ?? config.A1111_SAMPLER,
        scheduler: spec.scheduler ?? config.A1111_SCHEDULER,
        cfgScale: spec.cfgScale ?? config.A1111_CFG_SCALE,
        upscaler: spec.upscaler ?? config.A1111_UPSCALER,
        varyStrength: DEFAULT_VARY_STRENGTH,
        ...common,
      });
    }
    case 'comfyui': {
      const { ComfyUIGenerator } = await import('./comfyui.ts');
      const { DEFAULT_WORKFLOWS, loadWorkflow } = await import('./comfyui-workflow.ts');
      const load = (
        variable: string,
        path: string | undefined,
        fallback: URL,
        needs: Parameters<typeof loadWorkflow>[1],
      ): LoadedWorkflow => {
        try {
          return loadWorkflow(path ?? fallback, needs);
        } catch (err) {
          throw new Error(`${variable}: ${(err as Error).message}`);
        }
      };
      const label = (field: string, variable: string) =>
        config.GENERATORS ? `GENERATORS (${spec.name}).${field}` : variable;
      const generate = load(
        label('workflow', 'COMFYUI_WORKFLOW'),
        spec.workflow ?? config.COMFYUI_WORKFLOW,
        DEFAULT_WORKFLOWS.generate,
        ['prompt', 'seed'],
      );
      const vary = load(
        label('varyWorkflow', 'COMFYUI_VARY_WORKFLOW'),
        spec.varyWorkflow ?? config.COMFYUI_VARY_WORKFLOW,
        DEFAULT_WORKFLOWS.vary,
        ['image', 'seed', 'strength'],
      );
      const upscalePath = spec.upscaleWorkflow ?? config.COMFYUI_UPSCALE_WORKFLOW;
      return new ComfyUIGenerator({
        name: spec.name,
        url: spec.url ?? config.COMFYUI_URL!,
        auth: spec.auth ?? config.COMFYUI_AUTH,
        model: spec.model ?? config.COMFYUI_MODEL,
        workflows: {
          generate,
          vary,
          upscale: upscalePath
            ? load(
                label('upscaleWorkflow', 'COMFYUI_UPSCALE_WORKFLOW'),
                upscalePath,
                DEFAULT_WORKFLOWS.vary,
                ['image', 'width', 'height'],
              )
            : vary,
        },
        ...common,
      });
    }
    case 'replicate': {
      const { ReplicateGenerator } = await import('./replicate.ts');
      return new ReplicateGenerator({
        name: spec.name,
        apiUrl: spec.url ?? config.REPLICATE_API_URL,
        token: spec.token ?? config.REPLICATE_API_TOKEN!,
        model: spec.model ?? config.REPLICATE_MODEL,
        varyModel: spec.varyModel ?? config.REPLICATE_VARY_MODEL,
        upscaleModel: spec.upscaleModel ?? config.REPLICATE_UPSCALE_MODEL,
        outputHosts: config.REPLICATE_OUTPUT_HOSTS.split(',')
          .map((h) => h.trim())
          .filter(Boolean),
        ...common,
      });
    }
    case 'http':
    case 'modal': {
      const { HttpGenerator } = await import('./http.ts');
      // `auth` of a modal entry is `key:secret` (its Modal-Key and Modal-Secret).
      const [key, ...secret] = spec.auth?.split(':') ?? [];
      return new HttpGenerator({
        name: spec.name,
        url: spec.url ?? config.MODAL_FLUX_URL!,
        modalKey: spec.auth ? key : config.MODAL_KEY,
        modalSecret: spec.auth ? secret.join(':') : config.MODAL_SECRET,
        ...common,
      });
    }
    default:
      throw new Error(`generator type ${spec.type} is not built yet`);
  }
}
