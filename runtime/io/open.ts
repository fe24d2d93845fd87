import type { DiskOptions, NetOptions } from './machine-io.js';
import { openDisk, parseDiskSpec, parseNetSpec } from './spec.js';
import { UdpNet } from './net-udp.js';
import type { DiskBackend } from './backend.js';
import { DiskInUseError } from './image-lock.js';
import { DeferredDisk } from './deferred-disk.js';

/** What `--disk` / `--net` opened, ready for `new Machine({ ...io })`. */
export interface OpenedIo {
  disk?: DiskOptions;
  net?: NetOptions;
  /** The UDP forwarding backend (its bound ports, its counters). */
  udp?: UdpNet;
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
  opts: { deferDisk?: { sectors?: number } } = {},
): Promise<OpenedIo> {
  let disk: DiskBackend | undefined;
  let udp: UdpNet | undefined;
  try {
    const forwards = (specs.net ?? []).map(parseNetSpec);
    const diskSpec = specs.disk === undefined ? undefined : parseDiskSpec(specs.disk);
    if (diskSpec && opts.deferDisk) disk = new DeferredDisk(diskSpec, opts.deferDisk);
    else if (diskSpec) disk = await openDisk(diskSpec);
    if (forwards.length > 0) udp = await UdpNet.open(forwards);
  } catch (e) {
    await disk?.close().catch(() => {});
    throw new IoOpenError((e as Error).message, e instanceof DiskInUseError ? EXIT_DISK_IN_USE : 2);
  }
  return {
    ...(disk ? { disk: { backend: disk } } : {}),
    ...(udp ? { net: { backend: udp }, udp } : {}),
    async close() {
      await Promise.all([disk?.close().catch(() => {}), udp?.close()]);
    },
  };
}
