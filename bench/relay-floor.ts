/**
 * The floor `bench:relay` is measured against: a bare `node:http` server that HMACs each 1 MiB
 * body as it streams in and forwards its chunks over a loopback TCP socket, nothing else (no
 * framing, no checks, no state). Run by bench/relay.ts in a child process of its own; its CPU
 * per MiB comes from its own `process.cpuUsage()`, as the relay's does.
 *
 * With `FLOOR_BESIDE_RELAY=1` the same floor runs in a process that has also started an idle
 * imagine relay (`runtime/main.ts relay`, from the environment it is given): the same code
 * loaded, the same V8 flags, the same live heap, no traffic to it. V8 starts a full
 * mark-compact every ~64 MB of new ArrayBuffer memory (the HTTP parser copies each body chunk
 * into one), and each marks the whole live heap: this floor shows what that costs the relay's
 * heap with none of the relay's per-image work.
 */
import { createHmac, randomBytes } from 'node:crypto';
import http from 'node:http';
import net, { type Socket } from 'node:net';

declare const gc: (() => void) | undefined;

if (process.env.FLOOR_BESIDE_RELAY === '1') {
  process.argv[2] = 'relay';
  await import('../runtime/main.ts');
}

const sinks: Socket[] = [];
const tcp = net.createServer((socket) => {
  sinks.push(socket);
  socket.resume();
});
const key = randomBytes(32);
const server = http.createServer((req, res) => {
  const mac = createHmac('sha256', key);
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => {
    mac.update(chunk);
    chunks.push(chunk);
  });
  req.on('end', () => {
    mac.digest();
    const sink = sinks.shift()!;
    sinks.push(sink);
    sink.cork();
    for (const c of chunks) sink.write(c);
    sink.uncork();
    res.end('ok');
  });
});
server.keepAliveTimeout = 60_000;
await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
process.on('message', (m) => {
  if (m === 'usage') {
    const u = process.cpuUsage();
    process.send?.({ cpuMs: (u.user + u.system) / 1000 });
  } else if (m === 'heap') {
    // Read outside the timed windows: the collection's own CPU would count otherwise.
    if (typeof gc === 'function') gc();
    process.send?.({ heapUsed: process.memoryUsage().heapUsed });
  }
});
process.on('disconnect', () => process.exit(0));
process.send?.({
  http: (server.address() as net.AddressInfo).port,
  tcp: (tcp.address() as net.AddressInfo).port,
});
