import type { DiskBackend } from './backend.js';
import type { UdpForward } from './net-udp.js';

// The `--disk` and `--net` command-line specs.
//   --disk file:PATH | PATH | nbd://HOST:PORT/EXPORT[?reconnect-delay=SECONDS]
//          (as QEMU's NBD option: how long I/O waits for a lost server; default 30)
//   --net  udp:HOSTPORT:GUESTPORT | udp:ADDR:HOSTPORT:GUESTPORT   (repeatable)

export class SpecError extends Error {}

export type DiskSpec =
  | { kind: 'file'; path: string }
  | { kind: 'nbd'; host: string; port: number; export: string; reconnectDelayMs?: number };

const NBD_DEFAULT_PORT = 10809;

function port(text: string, what: string, allowZero = false): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n > 65535 || (n === 0 && !allowZero)) throw new SpecError(`${what}: '${text}' is not a port number`);
  return n;
}

export function parseDiskSpec(spec: string): DiskSpec {
  if (spec.startsWith('nbd://')) {
    const m = /^nbd:\/\/(\[[^\]]+\]|[^/:?]+)(?::(\d+))?(?:\/([^?]*))?(?:\?(.*))?$/.exec(spec);
    if (!m) throw new SpecError(`--disk ${spec}: expected nbd://HOST[:PORT]/EXPORT`);
    const out: DiskSpec = { kind: 'nbd', host: m[1]!.replace(/^\[|\]$/g, ''), port: m[2] === undefined ? NBD_DEFAULT_PORT : port(m[2], `--disk ${spec}`), export: decodeURIComponent(m[3] ?? '') };
    for (const [k, v] of new URLSearchParams(m[4] ?? '')) {
      if (k !== 'reconnect-delay') throw new SpecError(`--disk ${spec}: unknown option '${k}' (known: reconnect-delay)`);
      if (!/^\d+(\.\d+)?$/.test(v)) throw new SpecError(`--disk ${spec}: reconnect-delay '${v}' is not a number of seconds`);
      out.reconnectDelayMs = Math.round(Number(v) * 1000);
    }
    return out;
  }
  // A URL of another kind (or nbd: without //) is a typo, not a file name with a colon in it.
  if (/^nbd:/.test(spec) || (/^[a-z][a-z0-9+.-]*:\/\//.test(spec) && !spec.startsWith('file:'))) {
    throw new SpecError(`--disk ${spec}: expected file:PATH or nbd://HOST[:PORT]/EXPORT`);
  }
  const path = spec.startsWith('file:') ? spec.slice(5) : spec;
  if (path === '') throw new SpecError('--disk: empty path');
  return { kind: 'file', path };
}

export function parseNetSpec(spec: string): UdpForward {
  const parts = spec.split(':');
  if (parts[0] !== 'udp' || (parts.length !== 3 && parts.length !== 4)) {
    throw new SpecError(`--net ${spec}: expected udp:HOSTPORT:GUESTPORT or udp:ADDR:HOSTPORT:GUESTPORT`);
  }
  const hostAddr = parts.length === 4 ? parts[1]! : '127.0.0.1';
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(hostAddr)) throw new SpecError(`--net ${spec}: '${hostAddr}' is not an IPv4 address`);
  return { hostAddr, hostPort: port(parts[parts.length - 2]!, `--net ${spec}`, true), guestPort: port(parts[parts.length - 1]!, `--net ${spec}`) };
}

/** Open the disk a spec names. */
export async function openDisk(spec: DiskSpec): Promise<DiskBackend> {
  if (spec.kind === 'file') {
    const { FileDisk } = await import('./disk-file.js');
    return FileDisk.open(spec.path);
  }
  const { NbdDisk } = await import('./disk-nbd.js');
  return NbdDisk.connect(spec);
}
