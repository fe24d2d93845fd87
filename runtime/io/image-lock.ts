import { readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';

// One writer per disk (DESIGN §3), as QEMU's image locking ensures (block/file-posix.c,
// raw_apply_lock_bytes and raw_check_lock_bytes). QEMU takes a shared (read) byte-range lock
// at offset 100 + bit for each block permission it holds and at 200 + bit for each one it
// does not share with others, then tests the opposite bytes for a conflicting lock:
// before it may use a permission it tests 200 + bit (does anyone refuse to share it?), and
// before it may refuse to share one it tests 100 + bit (does anyone hold it?). Using the
// same bytes, ftvm and QEMU exclude each other on one image, and two ftvm guests do too.
//
// NOTE QEMU uses open-file-description (OFD) locks; Node has no fcntl, and the `os-lock`
// library takes classic POSIX record locks, whose conflicts with OFD locks Linux enforces
// both ways. Two differences follow and are handled here:
//  - POSIX locks belong to the process, so they never conflict inside one process: a
//    process-wide registry keyed by device and inode refuses a second open here (the
//    in-process pair, two disks in one test).
//  - WARNING closing ANY descriptor of the image in this process drops the process's locks
//    on it. The only descriptor ftvm opens on an image is the disk's own.

const require = createRequire(import.meta.url);
const osLock = require('os-lock') as {
  lock(fd: number, start: number, length: number, opts: { exclusive: boolean; immediate: boolean }): Promise<void>;
  unlock(fd: number, start: number, length: number): Promise<void>;
};

const PERM_BASE = 100; // RAW_LOCK_PERM_BASE
const SHARED_BASE = 200; // RAW_LOCK_SHARED_BASE
// BLK_PERM_* bits (include/block/block-common.h).
const PERM_CONSISTENT_READ = 0;
const PERM_WRITE = 1;
const PERM_RESIZE = 3;
const PERM_NAMES: Record<number, string> = { 0: 'consistent read', 1: 'write', 2: 'write unchanged', 3: 'resize' };

/** A writable virtio disk, as QEMU's virtio-blk without share-rw: reads and writes, shares neither writing nor resizing. */
const WRITER = { perms: [PERM_CONSISTENT_READ, PERM_WRITE], unshared: [PERM_WRITE, PERM_RESIZE] };
/** A read-only disk still refuses a writer beside it: what it reads must stay consistent. */
const READER = { perms: [PERM_CONSISTENT_READ], unshared: [PERM_WRITE] };

/** The image is in use: by another process (pids if they can be seen) or by this one. */
export class DiskInUseError extends Error {
  override readonly name = 'DiskInUseError';
  constructor(
    readonly path: string,
    readonly holders: readonly { pid: number; command: string }[],
    detail: string,
  ) {
    super(detail);
  }
}

/** Images locked by this process, by `dev:ino`, with what holds them (for the message). */
const heldHere = new Map<string, string>();

export interface ImageLock {
  /** Drop the byte locks and the registry entry (before the descriptor closes). */
  release(): Promise<void>;
}

/**
 * Lock an open image for this guest, or throw DiskInUseError naming who has it. `fd` stays
 * open for as long as the lock is wanted; `release` (or closing `fd`, or exiting) drops it.
 */
export async function lockImage(fd: number, path: string, opts: { readOnly?: boolean; dev: number; ino: number }): Promise<ImageLock> {
  const key = `${opts.dev}:${opts.ino}`;
  const other = heldHere.get(key);
  if (other !== undefined) {
    throw new DiskInUseError(path, [{ pid: process.pid, command: 'this process' }], `disk ${path} is in use by another guest in this process (${other})`);
  }
  heldHere.set(key, path);
  const mode = opts.readOnly ? READER : WRITER;
  const held = new Set<number>();
  const releaseAll = async (): Promise<void> => {
    for (const b of held) await osLock.unlock(fd, b, 1).catch(() => {});
    held.clear();
  };
  try {
    // Apply first, then check (as QEMU does): two guests racing each see the other and both
    // refuse, never both run.
    for (const bit of mode.perms) await take(fd, PERM_BASE + bit, false, held);
    for (const bit of mode.unshared) await take(fd, SHARED_BASE + bit, false, held);
    // A test is an exclusive lock tried at once; this process's own read lock on the byte
    // converts, then goes back to shared (or away, where this guest does not lock it).
    for (const bit of mode.perms) await test(fd, SHARED_BASE + bit, held, `"${PERM_NAMES[bit]}" lock`);
    for (const bit of mode.unshared) await test(fd, PERM_BASE + bit, held, `shared "${PERM_NAMES[bit]}" lock`);
  } catch (e) {
    await releaseAll();
    if (!(e instanceof Conflict) && NO_LOCKS.has((e as NodeJS.ErrnoException).code ?? '')) {
      // A file system without record locks (some FUSE and network mounts): as QEMU with
      // locking=auto, run unlocked, and say so; the registry still guards this process.
      process.stderr.write(`ftvm: disk ${path}: cannot lock the image (${(e as NodeJS.ErrnoException).code}); another guest could open it too\n`);
      return { release: async () => { heldHere.delete(key); } };
    }
    heldHere.delete(key);
    if (!(e instanceof Conflict)) throw e;
    const holders = findHolders(opts.dev, opts.ino);
    const who = holders.length > 0
      ? holders.map((h) => `pid ${h.pid} ${h.command}`).join(', ')
      : 'a process on another host or namespace, not visible here';
    throw new DiskInUseError(path, holders, `disk ${path} is in use by another guest (${who}): cannot get the ${e.message}`);
  }
  let released = false;
  return {
    async release() {
      if (released) return;
      released = true;
      await releaseAll();
      heldHere.delete(key);
    },
  };
}

class Conflict extends Error {}

/** Errors of a file system that has no record locks at all. */
const NO_LOCKS = new Set(['ENOLCK', 'EOPNOTSUPP', 'ENOTSUP', 'ENOSYS']);

function isConflict(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'EAGAIN' || code === 'EACCES' || code === 'EWOULDBLOCK';
}

async function take(fd: number, byte: number, exclusive: boolean, held: Set<number>): Promise<void> {
  try {
    await osLock.lock(fd, byte, 1, { exclusive, immediate: true });
    held.add(byte);
  } catch (e) {
    if (isConflict(e)) throw new Conflict(`lock on byte ${byte}`);
    throw e;
  }
}

async function test(fd: number, byte: number, held: Set<number>, what: string): Promise<void> {
  const keep = held.has(byte);
  try {
    await osLock.lock(fd, byte, 1, { exclusive: true, immediate: true });
  } catch (e) {
    if (isConflict(e)) throw new Conflict(what);
    throw e;
  }
  if (keep) await osLock.lock(fd, byte, 1, { exclusive: false, immediate: true });
  else await osLock.unlock(fd, byte, 1);
}

/**
 * Processes of this host (this pid namespace) with the image open, other than this one. An
 * OFD lock records no owner (/proc/locks shows pid -1), so the open descriptors tell instead.
 * Best effort: processes of other users or hosts are not seen.
 */
export function findHolders(dev: number, ino: number): { pid: number; command: string }[] {
  const out: { pid: number; command: string }[] = [];
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid);
  } catch {
    return out;
  }
  for (const p of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${p}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const st = statSync(`/proc/${p}/fd/${fd}`);
        if (st.dev !== dev || st.ino !== ino) continue;
      } catch {
        continue;
      }
      let command = '?';
      try {
        command = readFileSync(`/proc/${p}/comm`, 'utf8').trim();
      } catch { /* gone meanwhile */ }
      out.push({ pid: Number(p), command });
      break;
    }
  }
  return out;
}
