// What names a shared disk to the other replica (DESIGN §3 One writer per disk, Membership):
// its size, an NBD export's name or a file's inode, and a digest of its first 64 KiB. The
// primary admits a backup only if it names the same disk (tcp-frames.ts `refusal`).
import { createHash } from 'node:crypto';
import { accessSync, closeSync, constants, openSync, readSync, statSync } from 'node:fs';
import type { DiskIdentity } from '../channel/tcp-frames.js';
import type { DiskBackend } from './backend.js';
import { openDisk, type DiskSpec } from './spec.js';

const HEAD_SECTORS = 128;
const SECTOR_BYTES = 512;

const digest = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex').slice(0, 32);

/** The first 64 KiB (or the whole disk), zero-padded as a read past a file's end reads. */
function headBytes(sectors: number): Uint8Array {
  return new Uint8Array(Math.min(HEAD_SECTORS, sectors) * SECTOR_BYTES);
}

/**
 * The identity of a disk this node has open (a live primary): read through its backend, so a
 * file's lock stays this process's (closing another descriptor of a file drops its POSIX locks).
 */
export async function openDiskIdentity(spec: DiskSpec, backend: DiskBackend): Promise<DiskIdentity> {
  const head = backend.sectors === 0 ? headBytes(0) : await backend.read(0, Math.min(HEAD_SECTORS, backend.sectors));
  return { sectors: backend.sectors, head: digest(head), ...where(spec) };
}

/**
 * The identity of a disk a backup names but must not open (it is not live): a file is read
 * without a lock (this process holds none on it); an NBD export over a connection of its own,
 * closed at once (NBD locks nothing).
 */
export async function peekDiskIdentity(spec: DiskSpec): Promise<DiskIdentity> {
  if (spec.kind === 'nbd') {
    const probe = await openDisk(spec);
    try {
      return await openDiskIdentity(spec, probe);
    } finally {
      await probe.close();
    }
  }
  // It must be able to write it at go-live: a read-only mount or a file it may not write is
  // said now, as the primary's open says it, not first at a takeover.
  try {
    accessSync(spec.path, constants.W_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw Object.assign(new Error(`${spec.path}: ${code === 'EROFS' ? 'on a read-only filesystem' : code === 'EACCES' ? 'permission denied' : (e as Error).message}`), { exitCode: 2 });
  }
  const sectors = Math.floor(statSync(spec.path).size / SECTOR_BYTES);
  const head = headBytes(sectors);
  const fd = openSync(spec.path, 'r');
  try {
    let done = 0;
    while (done < head.length) {
      const n = readSync(fd, head, done, head.length - done, done);
      if (n === 0) break;
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  return { sectors, head: digest(head), ...where(spec) };
}

/**
 * An NBD export by name; a regular file by inode (the same on one host and on shared storage,
 * NFS included; a copy has its own). A block device's node is each host's own (its inode and
 * numbers may differ for one shared LUN): its size and first blocks name it.
 */
function where(spec: DiskSpec): { export: string } | { ino: number } | Record<string, never> {
  if (spec.kind === 'nbd') return { export: spec.export };
  const st = statSync(spec.path);
  return st.isFile() ? { ino: st.ino } : {};
}
