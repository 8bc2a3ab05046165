/**
 * Several backends behind one `Generator`: a job goes to a healthy backend that can do it (lowest
 * priority first, weighted among equals); a failure that is the backend's (retryable, or refused
 * credentials and broken answers) counts against its circuit (opened: skipped for a cool-down,
 * then one trial call) and the job tries the next backend before it goes back to the queue.
 * Failures of the request itself (rejected input, a refused prompt) end the job at once: another
 * backend would refuse it too.
 */
import {
  BrokenCircuitError,
  type CircuitBreakerPolicy,
  CircuitState,
  ConsecutiveBreaker,
  circuitBreaker,
  handleWhen,
} from 'cockatiel';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import {
  type BackendCapability,
  type BackendDemand,
  type BackendStatus,
  canServe,
} from '../../contracts/backends.ts';
import { ImagineError, isRetryable } from '../../contracts/errors.ts';
import type { GeneratedImage, GenerateOptions, GenerateRequest, Generator } from '../generator.ts';

/** One backend the router may use. */
export interface RoutedBackend extends BackendCapability {
  name: string;
  type: string;
  generator: Generator;
  priority: number;
  weight: number;
}

/** Options of {@link GeneratorRouter}. */
export interface RouterOptions {
  backends: RoutedBackend[];
  /** Consecutive retryable failures that mark a backend unhealthy. */
  failuresToOpen: number;
  /** How long an unhealthy backend is skipped before its trial call, ms. */
  cooldownMs: number;
  random?: () => number;
}

/** What a request needs of a backend. */
export function demandOf(req: GenerateRequest): BackendDemand {
  return {
    task: req.task,
    count: req.seeds.length,
    width: req.width,
    height: req.height,
    model: req.model,
  };
}

/**
 * Whether a failure is the backend's, not the request's: retryable ones (5xx, unreachable,
 * timeouts) and a backend that is misconfigured or broken (refused credentials, answers that are
 * not images). Those count against its health and the job moves on to the next backend.
 */
export function isBackendFault(err: unknown): boolean {
  if (isRetryable(err)) return true;
  return (
    err instanceof ImagineError &&
    (err.code === 'GENERATOR_AUTH' || err.code === 'GENERATOR_BAD_RESPONSE')
  );
}

interface Entry {
  backend: RoutedBackend;
  breaker: CircuitBreakerPolicy;
  calls: number;
  failures: number;
  lastError?: string;
  latency?: { last: number; average: number };
  openedAt?: number;
}

/** The router: itself a {@link Generator}, so the runner never knows there are several. */
export class GeneratorRouter implements Generator {
  readonly name: string;
  /** Per-backend metrics, in a registry of their own (the relay serves it beside its own). */
  readonly registry = new Registry();
  private readonly entries: Entry[];
  private readonly opts: RouterOptions;
  private readonly random: () => number;
  private readonly calls: Counter<'backend' | 'outcome'>;
  private readonly latency: Histogram<'backend'>;

  constructor(opts: RouterOptions) {
    if (opts.backends.length === 0) throw new Error('the router needs at least one backend');
    this.opts = opts;
    this.random = opts.random ?? Math.random;
    this.name = opts.backends.map((b) => b.name).join('+');
    this.entries = opts.backends.map((backend) => {
      const breaker = circuitBreaker(
        handleWhen((err) => isBackendFault(err)),
        {
          halfOpenAfter: opts.cooldownMs,
          breaker: new ConsecutiveBreaker(opts.failuresToOpen),
        },
      );
      const entry: Entry = { backend, breaker, calls: 0, failures: 0 };
      breaker.onBreak(() => {
        entry.openedAt = Date.now();
      });
      breaker.onReset(() => {
        delete entry.openedAt;
      });
      return entry;
    });
    this.calls = new Counter({
      name: 'imagine_backend_calls_total',
      help: 'Generator backend calls by outcome (ok, retryable, failed, skipped, aborted)',
      labelNames: ['backend', 'outcome'],
      registers: [this.registry],
    });
    this.latency = new Histogram({
      name: 'imagine_backend_seconds',
      help: 'Time a successful backend call took',
      labelNames: ['backend'],
      buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120],
      registers: [this.registry],
    });
    const entries = this.entries;
    new Gauge({
      name: 'imagine_backend_up',
      help: 'Backend health: 1 healthy, 0.5 probing (one trial call), 0 unhealthy',
      labelNames: ['backend'],
      registers: [this.registry],
      collect() {
        for (const e of entries)
          this.set(
            { backend: e.backend.name },
            e.breaker.state === CircuitState.Closed
              ? 1
              : e.breaker.state === CircuitState.HalfOpen
                ? 0.5
                : 0,
          );
      },
    });
  }

  async generate(req: GenerateRequest, options: GenerateOptions): Promise<GeneratedImage[]> {
    return this.route(req, options, (g) => g.generate(req, options));
  }

  /**
   * Try the capable backends in order until one answers. `call` runs the request on one; the
   * result of the first success is returned. Throws the last retryable error when every
   * capable backend failed or is unhealthy, so the queue tries the job again later.
   */
  async route<T>(
    req: GenerateRequest,
    options: GenerateOptions,
    call: (generator: Generator, backend: RoutedBackend) => Promise<T>,
  ): Promise<T> {
    const demand = demandOf(req);
    const capable = this.entries.filter((e) => canServe(e.backend, demand));
    if (capable.length === 0)
      throw new ImagineError(
        'GENERATOR_REJECTED',
        `no configured backend can do a ${demand.width}×${demand.height} ${demand.task}` +
          `${demand.count > 1 ? ` of ${demand.count} images` : ''}` +
          `${demand.model ? ` with model ${demand.model}` : ''}`,
      );
    let retryable: unknown;
    let fault: unknown;
    for (const entry of this.order(capable)) {
      options.signal.throwIfAborted();
      const name = entry.backend.name;
      const started = performance.now();
      try {
        const result = await entry.breaker.execute(() => {
          entry.calls++;
          return call(entry.backend.generator, entry.backend);
        });
        const ms = performance.now() - started;
        entry.latency = {
          last: ms,
          average: entry.latency ? entry.latency.average * 0.8 + ms * 0.2 : ms,
        };
        this.calls.inc({ backend: name, outcome: 'ok' });
        this.latency.observe({ backend: name }, ms / 1000);
        return result;
      } catch (err) {
        if (err instanceof BrokenCircuitError) {
          this.calls.inc({ backend: name, outcome: 'skipped' });
          continue;
        }
        if (options.signal.aborted) {
          this.calls.inc({ backend: name, outcome: 'aborted' });
          throw err;
        }
        entry.failures++;
        entry.lastError = err instanceof ImagineError ? err.code : 'INTERNAL';
        if (!isBackendFault(err)) {
          // The request itself is wrong (rejected input, a refused prompt): any backend would fail it.
          this.calls.inc({ backend: name, outcome: 'failed' });
          throw err;
        }
        this.calls.inc({ backend: name, outcome: isRetryable(err) ? 'retryable' : 'faulty' });
        if (isRetryable(err)) retryable = err;
        else fault ??= err;
      }
    }
    // A retryable failure wins: the queue tries again later, when that backend may be back.
    if (retryable !== undefined) throw retryable;
    if (fault !== undefined) throw fault;
    const retryAt = Math.min(...capable.map((e) => (e.openedAt ?? 0) + this.opts.cooldownMs));
    throw new ImagineError(
      'GENERATOR_UNAVAILABLE',
      'every backend that can do this is unhealthy right now',
      {
        retryAfterSeconds: Math.max(1, Math.ceil((retryAt - Date.now()) / 1000)),
      },
    );
  }

  /** Capable backends in the order to try: healthy ones first, by priority, weighted among equals. */
  private order(capable: Entry[]): Entry[] {
    const byPriority = new Map<number, Entry[]>();
    for (const e of capable) {
      const group = byPriority.get(e.backend.priority) ?? [];
      group.push(e);
      byPriority.set(e.backend.priority, group);
    }
    const ordered: Entry[] = [];
    for (const priority of [...byPriority.keys()].sort((a, b) => a - b)) {
      const pool = [...byPriority.get(priority)!];
      while (pool.length > 1) {
        const total = pool.reduce((sum, e) => sum + e.backend.weight, 0);
        const pick = this.random() * total;
        let index = 0;
        for (let upTo = pool[0]!.backend.weight; upTo <= pick && index < pool.length - 1; )
          upTo += pool[++index]!.backend.weight;
        ordered.push(pool.splice(index, 1)[0]!);
      }
      ordered.push(...pool);
    }
    // Unhealthy ones still cooling down go last (they are skipped at once); one whose cool-down
    // is over keeps its place, so it gets its trial call.
    const cooling = (e: Entry) =>
      e.breaker.state === CircuitState.Open &&
      (e.openedAt ?? 0) + this.opts.cooldownMs > Date.now();
    return [...ordered.filter((e) => !cooling(e)), ...ordered.filter(cooling)];
  }

  /** How every backend stands (for `/healthz`). */
  status(): BackendStatus[] {
    return this.entries.map((e) => {
      const open = e.breaker.state === CircuitState.Open;
      return {
        name: e.backend.name,
        type: e.backend.type,
        state: open
          ? 'unhealthy'
          : e.breaker.state === CircuitState.HalfOpen
            ? 'probing'
            : 'healthy',
        priority: e.backend.priority,
        weight: e.backend.weight,
        tasks: e.backend.tasks,
        calls: e.calls,
        failures: e.failures,
        ...(e.lastError ? { lastError: e.lastError } : {}),
        ...(e.latency
          ? {
              latencyMs: {
                last: Math.round(e.latency.last),
                average: Math.round(e.latency.average),
              },
            }
          : {}),
        ...(open && e.openedAt !== undefined ? { retryAt: e.openedAt + this.opts.cooldownMs } : {}),
      };
    });
  }
}
