import { statfsSync, statSync } from 'node:fs';
import { open, statfs, type FileHandle } from 'node:fs/promises';
import type { DiskBackend } from './backend.js';
import { lockImage, type ImageLock } from './image-lock.js';
import { PSEUDO_FS } from './pseudo-fs.js';

const SECTOR_BYTES = 512;

/** The operator's usual mistakes with a disk path, in plain words (the rest keep Node's text). */
const OPEN_ERRORS: Record<string, string> = {
  ENOENT: 'no such file', EISDIR: 'is a directory, not a disk image', EACCES: 'permission denied',
  EROFS: 'on a read-only filesystem',
};

const plainWords = (path: string, e: unknown): Error => {
  const why = OPEN_ERRORS[(e as NodeJS.ErrnoException).code ?? ''];
  return why === undefined ? (e as Error) : new Error(`${path}: ${why}`);
};

/**
 * Check a disk image's path without opening it (a backup's disk, which it opens only at
 * go-live) and return its size in bytes: the mistakes FileDisk.open would meet then are met now.
 */
export function statDiskImage(path: string): number {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw plainWords(path, e);
  }
  if (st.isDirectory()) throw new Error(`${path}: ${OPEN_ERRORS.EISDIR}`);
  if (!st.isFile() && !st.isBlockDevice()) throw new Error(`${path}: not a file`);
  const pseudo = st.isFile() ? PSEUDO_FS[statfsSync(path).type] : undefined;
  if (pseudo !== undefined) throw new Error(`${path}: on the ${pseudo} pseudo filesystem, not a disk image`);
  return st.size;
}

/**
 * A raw disk image in a local file (the embedded default, DESIGN §4): positional reads and
 * writes, flush = fsync. Bytes past the end of a file whose size is not a whole number of
 * sectors are not part of the disk. The image is locked while open, as QEMU locks it
 * (image-lock.ts): a second guest on it, here or in QEMU, is refused with DiskInUseError.
 */
export class FileDisk implements DiskBackend {
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly fh: FileHandle,
    private readonly lock: ImageLock,
    readonly sectors: number,
    readonly name: string,
  ) {}

  static async open(path: string, opts: { readOnly?: boolean } = {}): Promise<FileDisk> {
    let fh: FileHandle;
    try {
      fh = await open(path, opts.readOnly ? 'r' : 'r+');
    } catch (e) {
      throw plainWords(path, e);
    }
    try {
      const st = await fh.stat();
      if (!st.isFile() && !st.isBlockDevice()) throw new Error(`${path}: not a file`);
      const pseudo = st.isFile() ? PSEUDO_FS[(await statfs(path)).type] : undefined;
      if (pseudo !== undefined) throw new Error(`${path}: on the ${pseudo} pseudo filesystem, not a disk image`);
      const lock = await lockImage(fh.fd, path, { dev: st.dev, ino: st.ino, ...(opts.readOnly ? { readOnly: true } : {}) });
      return new FileDisk(fh, lock, Math.floor(st.size / SECTOR_BYTES), `file:${path}`);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  async read(sector: number, count: number): Promise<Uint8Array> {
    const buf = new Uint8Array(count * SECTOR_BYTES);
    let done = 0;
    while (done < buf.length) {
      const { bytesRead } = await this.fh.read(buf, done, buf.length - done, sector * SECTOR_BYTES + done);
      if (bytesRead === 0) break; // past the end of the file: reads as zeros
      done += bytesRead;
    }
    return buf;
  }

  async write(sector: number, data: Uint8Array): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.fh.write(data, done, data.length - done, sector * SECTOR_BYTES + done);
      done += bytesWritten;
    }
  }

  async flush(): Promise<void> {
    await this.fh.sync();
  }

  /**
   * Drops the lock and closes the file; nothing is flushed (that is `flush`), so it is also what
   * a killed process's exit does (backend.ts `abandon`). A second call waits for the first.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.lock.release();
      await this.fh.close();
    })();
    return this.closing;
  }
}
