import type { DiskBackend } from './backend.js';
import { DiskInUseError } from './image-lock.js';
import { openDisk, type DiskSpec } from './spec.js';
import { DEFAULT_RECONNECT_DELAY_MS } from './disk-nbd.js';
import { statDiskImage } from './disk-file.js';

const SECTOR_BYTES = 512;
// A killed primary on this host lets go of the lock when its process has exited, which on a
// loaded host comes 100s of ms after the backup heard of the death; with retries backing off
// to 2 s the lock then waited for the next try (disk locked 40-690 ms after the won claim at
// load 20-23, docs/BENCHMARKS.md "Go-live of an I/O backup (issue 13)"). A try is an open and
// a lock call (for NBD a connect): cheap enough to repeat every 200 ms at most.
const FIRST_RETRY_MS = 25;
const MAX_RETRY_MS = 200;
const REPORT_EVERY_MS = 10_000;

export interface DeferredDiskOptions {
  /** Capacity when the disk cannot tell before it is opened (NBD: from the log's snapshot). */
  sectors?: number;
  /** Where the waiting lines go; by default `ftvm: …` lines on stderr. */
  report?: (line: string) => void;
}

/**
 * The shared disk of a replica that is not live yet (DESIGN §3 one writer per disk): only the
 * live replica opens and locks the image, so this opens it on the first request, which comes
 * only after go-live (a replaying backup issues none: the log answers its reads). If the image
 * is still locked (the old primary is suspected, not dead, or its host has not let go) the
 * requests wait, and the open is retried with backoff up to 200 ms, saying so on stderr every 10 s,
 * until the lock is free: the guest never runs on without its disk, nor beside a second writer.
 */
export class DeferredDisk implements DiskBackend {
  readonly name: string;
  readonly sectors: number;
  private opened: Promise<DiskBackend> | undefined;
  private closed = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private readonly report: (line: string) => void;

  constructor(private readonly spec: DiskSpec, opts: DeferredDiskOptions = {}) {
    this.name = spec.kind === 'file' ? `file:${spec.path}` : `nbd://${spec.host}:${spec.port}/${spec.export}`;
    this.report = opts.report ?? ((line) => { process.stderr.write(`ftvm: ${line}\n`); });
    if (opts.sectors !== undefined) this.sectors = opts.sectors;
    else if (spec.kind === 'file') this.sectors = Math.floor(statDiskImage(spec.path) / SECTOR_BYTES);
    else throw new RangeError(`${this.name}: a deferred NBD disk needs its capacity in sectors`);
  }

  /** Opening (and locking) has begun. */
  get isOpen(): boolean {
    return this.opened !== undefined;
  }

  /** Open and locked: the lock is this process's (not still being waited for). */
  get isLocked(): boolean {
    return this.locked;
  }
  private locked = false;

  /** Open and lock now (go-live), waiting while another guest holds the image. */
  claim(): Promise<DiskBackend> {
    this.opened ??= this.openWaiting();
    return this.opened;
  }

  async read(sector: number, count: number): Promise<Uint8Array> {
    return (await this.claim()).read(sector, count);
  }

  async write(sector: number, data: Uint8Array): Promise<void> {
    await (await this.claim()).write(sector, data);
  }

  async flush(): Promise<void> {
    await (await this.claim()).flush();
  }

  close(): Promise<void> {
    return this.end((x) => x.close());
  }

  /** The process died (backend.ts): stop waiting, and let go of the disk if it was open. */
  abandon(): Promise<void> {
    return this.end((x) => (x.abandon ? x.abandon() : x.close()));
  }

  /** Stop waiting for the disk, and end it as `release` does if it was open. */
  private async end(release: (d: DiskBackend) => Promise<void>): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.wake?.();
    const d = this.opened;
    if (d) await d.then(release, () => {});
  }

  private async openWaiting(): Promise<DiskBackend> {
    const t0 = performance.now();
    let delayMs = FIRST_RETRY_MS;
    let reportedAt = -Infinity;
    for (;;) {
      if (this.closed) throw new Error(`${this.name}: closed`);
      try {
        const d = await openDisk(this.spec);
        if (this.closed) {
          await d.close();
          throw new Error(`${this.name}: closed`);
        }
        this.locked = true;
        if (reportedAt > -Infinity) this.report(`disk ${this.spec.kind === 'file' ? this.spec.path : this.name} locked after ${Math.round(performance.now() - t0)} ms`);
        return d;
      } catch (e) {
        const now = performance.now();
        // An NBD server that is not there (restarting) is waited for as a connected NbdDisk
        // waits for one it lost: up to reconnect-delay, the guest's I/O waiting meanwhile.
        const serverAway = this.spec.kind === 'nbd' && /ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|connection closed/.test((e as Error).message) &&
          now - t0 < (this.spec.reconnectDelayMs ?? DEFAULT_RECONNECT_DELAY_MS);
        // Only a lock held elsewhere, or that, is worth waiting for; anything else is an I/O error now.
        if (!(e instanceof DiskInUseError) && !serverAway) throw e;
        if (now - reportedAt >= REPORT_EVERY_MS) {
          reportedAt = now;
          this.report(serverAway ? `${(e as Error).message}: retrying, the guest's disk I/O waits`
            : `${(e as Error).message}; the old primary may still hold it: retrying, the guest's disk I/O waits`);
        }
      }
      await new Promise<void>((r) => {
        this.wake = r;
        this.retryTimer = setTimeout(r, delayMs);
      });
      delayMs = Math.min(delayMs * 2, MAX_RETRY_MS);
    }
  }
}
