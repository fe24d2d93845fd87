import { createSocket } from 'node:dgram';

/** A UDP port free on loopback a moment ago (for a --net forward or a QEMU hostfwd). */
export async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}
