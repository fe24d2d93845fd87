// The service port of a fault run (service-run.ts): a free UDP port below the host's ephemeral
// range, so that no client socket can be given it while no node holds it.
//
// Between a kill and the new primary's bind, the forwarded port is free. A port from the
// ephemeral range (what binding port 0 gives) may then be handed to a client's own socket: a
// resolver (c-ares: a new socket per query) bound to the service port and connected to it sends
// its query to itself, and takes that query back as the reply. Its id and question are the
// query's own, so c-ares accepts it, and with no answer in it the resolver says ENODATA: a
// wrong answer that no node sent (RELIABILITY "dns wrong answer": batch 10, run 20). A kv
// client bound there would keep the port from the new primary for good. A real service port
// (53) is below the range; the harness's is now too.

import { createSocket } from 'node:dgram';
import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';

/** Linux's default, where /proc does not say (another OS). */
export const DEFAULT_EPHEMERAL: readonly [number, number] = [32768, 60999];
/** Ports below this are left alone (privileged, and the well-known services'). */
const LOWEST = 10_000;

/** The host's ephemeral port range (net.ipv4.ip_local_port_range), both ends included. */
export function ephemeralRange(file = '/proc/sys/net/ipv4/ip_local_port_range'): [number, number] {
  try {
    const [lo, hi] = readFileSync(file, 'utf8').trim().split(/\s+/).map(Number);
    if (Number.isInteger(lo) && Number.isInteger(hi) && lo! > 0 && hi! >= lo!) return [lo!, hi!];
  } catch {
    // not Linux, or no /proc: the default below
  }
  return [...DEFAULT_EPHEMERAL];
}

/** Whether a UDP socket can bind `port` on `host` now (and lets go of it at once). */
export function udpPortFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    s.once('error', () => {
      s.close();
      resolve(false);
    });
    s.bind(port, host, () => s.close(() => resolve(true)));
  });
}

/**
 * A UDP port on `host` that is free now and outside the ephemeral range: from
 * [LOWEST, low) when the range starts above LOWEST (Linux: 10000-32767), else from above its
 * high end. Random, so that two runs at once rarely try the same one. Throws if 200 tries
 * found none free.
 */
export async function servicePort(opts: { host?: string; range?: readonly [number, number] } = {}): Promise<number> {
  const [lo, hi] = opts.range ?? ephemeralRange();
  const [from, to] = lo > LOWEST + 1000 ? [LOWEST, lo] : [hi + 1, 65536];
  if (to - from < 1) throw new Error(`no port outside the ephemeral range ${lo}-${hi}`);
  for (let i = 0; i < 200; i++) {
    const port = randomInt(from, to);
    if (await udpPortFree(port, opts.host)) return port;
  }
  throw new Error(`no free UDP port in ${from}-${to - 1}`);
}
