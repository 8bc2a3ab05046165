/**
 * The floor `bench:relay` is measured against: a bare `node:http` server that HMACs each 1 MiB
 * body as it streams in and forwards its chunks over a loopback TCP socket, nothing else (no
 * framing, no checks, no state). Run by bench/relay.ts in a child process of its own; its CPU
 * per MiB comes from its own `process.cpuUsage()`, as the relay's does.
 */
import { createHmac, randomBytes } from 'node:crypto';
import http from 'node:http';
import net, { type Socket } from 'node:net';

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
  if (m !== 'usage') return;
  const u = process.cpuUsage();
  process.send?.({ cpuMs: (u.user + u.system) / 1000 });
});
process.on('disconnect', () => process.exit(0));
process.send?.({
  http: (server.address() as net.AddressInfo).port,
  tcp: (tcp.address() as net.AddressInfo).port,
});
