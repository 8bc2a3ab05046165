/**
 * Preloaded into a benchmarked server (`--import`): answers `usage` over the IPC channel with the
 * process's own CPU time and memory, so figures never include the load generator's CPU.
 */
declare const gc: (() => void) | undefined;

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
    external: mem.external,
    arrayBuffers: mem.arrayBuffers,
  });
});
