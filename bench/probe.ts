/**
 * Preloaded into a benchmarked server (`--import`): answers `usage` over the IPC channel with the
 * process's own CPU time and memory, so figures never include the load generator's CPU. It also
 * counts the process's outgoing SQS requests (HTTP requests with an `x-amz-target` header, the
 * SQS JSON protocol's action name), by action: what AWS would bill.
 */
import { subscribe } from 'node:diagnostics_channel';
import type { ClientRequest } from 'node:http';

declare const gc: (() => void) | undefined;

const sqsRequests: Record<string, number> = {};
subscribe('http.client.request.start', (message) => {
  const target = (message as { request: ClientRequest }).request.getHeader('x-amz-target');
  if (typeof target !== 'string' || !target.startsWith('AmazonSQS.')) return;
  const action = target.slice('AmazonSQS.'.length);
  sqsRequests[action] = (sqsRequests[action] ?? 0) + 1;
});

process.channel?.unref();
process.on('message', (message: unknown) => {
  if (message !== 'usage' && message !== 'usage-after-gc') return;
  if (message === 'usage-after-gc' && typeof gc === 'function') {
    gc();
    gc();
  }
  const cpu = process.cpuUsage();
  const mem = process.memoryUsage();
  process.send?.({
    cpuMs: (cpu.user + cpu.system) / 1000,
    rss: mem.rss,
    heapUsed: mem.heapUsed,
    heapTotal: mem.heapTotal,
    external: mem.external,
    arrayBuffers: mem.arrayBuffers,
    sqsRequests: { ...sqsRequests },
  });
});
