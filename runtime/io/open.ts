import type { DiskOptions, NetOptions } from './machine-io.js';
import { openDisk, parseDiskSpec, parseNetSpec } from './spec.js';
import { UdpNet } from './net-udp.js';
import type { DiskBackend } from './backend.js';
import { DiskInUseError } from './image-lock.js';
import { DeferredDisk } from './deferred-disk.js';
import { DeferredNet } from './deferred-net.js';

/** What `--disk` / `--net` opened, ready for `new Machine({ ...io })`. */
export interface OpenedIo {
  disk?: DiskOptions;
  net?: NetOptions;
  /** The UDP forwarding backend (its bound ports, its counters); deferred: once bound. */
  udp?: UdpNet;
  /** Deferred backends (a replica not live yet), opened by `goLive`. */
  deferred?: { disk?: DeferredDisk; net?: DeferredNet };
  /**
   * Go-live of a deferred replica: take the disk lock and bind the service ports, each
   * waiting while the old primary still holds them. Resolves with one line per bound forward.
   */
  goLive(): Promise<string[]>;
  /** Close what was opened (if the machine never took it over). */
  close(): Promise<void>;
}

/** Exit code of a guest refused because its disk image is in use (DESIGN §3 one writer per disk). */
export const EXIT_DISK_IN_USE = 4;

/** An expected failure to open a backend: one clear line for the user, and the exit code to give. */
export class IoOpenError extends Error {
  constructor(message: string, readonly exitCode = 2) {
    super(message);
  }
}

/**
 * Parse and open the command-line specs; throws IoOpenError with a readable message. With
 * `deferDisk` (a replica that is not live yet), the disk is opened and locked only on its first
 * request, after go-live (DeferredDisk); `sectors` gives its size where it cannot be read first.
 */
export async function openIo(
  specs: { disk?: string | undefined; net?: string[] | undefined },
  opts: { deferDisk?: { sectors?: number }; deferNet?: boolean } = {},
): Promise<OpenedIo> {
  let disk: DiskBackend | undefined;
  let udp: UdpNet | undefined;
  let net: DeferredNet | undefined;
  try {
    const forwards = (specs.net ?? []).map(parseNetSpec);
    const diskSpec = specs.disk === undefined ? undefined : parseDiskSpec(specs.disk);
    if (diskSpec && opts.deferDisk) {
      let sectors = opts.deferDisk.sectors;
      if (sectors === undefined && diskSpec.kind === 'nbd') {
        // NOTE the capacity only: a handshake and a disconnect, no data read or written, no
        // lock (NBD has none): the guest must see the size the primary's guest sees.
        const probe = await openDisk(diskSpec);
        sectors = probe.sectors;
        await probe.close();
      }
      disk = new DeferredDisk(diskSpec, sectors === undefined ? {} : { sectors });
    } else if (diskSpec) disk = await openDisk(diskSpec);
    if (forwards.length > 0) {
      if (opts.deferNet) net = new DeferredNet(forwards);
      else udp = await UdpNet.open(forwards);
    }
  } catch (e) {
    await disk?.close().catch(() => {});
    // A backend may say what kind of failure it was (an NBD server out of reach: 1, run time).
    const code = (e as { exitCode?: unknown }).exitCode;
    throw new IoOpenError((e as Error).message, e instanceof DiskInUseError ? EXIT_DISK_IN_USE : typeof code === 'number' ? code : 2);
  }
  const deferredDisk = disk instanceof DeferredDisk ? disk : undefined;
  const out: OpenedIo = {
    ...(disk ? { disk: { backend: disk } } : {}),
    ...(udp ? { net: { backend: udp }, udp } : {}),
    ...(net ? { net: { backend: net } } : {}),
    ...(deferredDisk || net ? { deferred: { ...(deferredDisk ? { disk: deferredDisk } : {}), ...(net ? { net } : {}) } } : {}),
    async goLive() {
      const [, bound] = await Promise.all([deferredDisk?.claim(), net?.open()]);
      if (bound) out.udp = bound;
      return out.udp?.describe() ?? [];
    },
    async close() {
      await Promise.all([disk?.close().catch(() => {}), udp?.close(), net?.close()]);
    },
  };
  return out;
}
