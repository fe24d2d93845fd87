import { randomInt } from 'node:crypto';
import type { NetBackend } from './backend.js';
import { UdpNat, UdpNet, type NatTable, type UdpForward } from './net-udp.js';

const FIRST_RETRY_MS = 50;
// Short: at go-live the --on-live hook may be adding the address right now.
const MAX_RETRY_MS = 200;
const REPORT_EVERY_MS = 10_000;
/** Replies held while the ports are being bound; a full NIC queue drops beyond (the clients retry). */
const MAX_HELD_FRAMES = 256;

export interface DeferredNetOptions {
  /** Where the waiting lines go; by default `ftvm: …` lines on stderr. */
  report?: (line: string) => void;
}

/**
 * The service ports of a replica that is not live yet (DESIGN §3 the service moves with the
 * live replica): a replaying backup gets its packets from the log and binds nothing; `open`,
 * at go-live, binds the forwards. A port still held (the old primary on this host is not dead
 * yet) or an address not here yet (an --on-live hook is moving the service address to this
 * host) is retried with backoff, said on stderr every 10 s: clients retry meanwhile.
 *
 * The NAT table of the old primary died with it, but every frame its guest received carried
 * its client (frames.ts): `learn`, called for each frame the replay delivers, rebuilds the table
 * the guest's replies need, and the frames the guest sends before the ports are bound (the
 * replies go-live re-issues) are held and sent once they are (DESIGN §3 Duplicate outputs).
 * A backup that joined from a snapshot sees only the frames after it: the snapshot brings the
 * primary's table for the clients from before (`adoptNat`, ft/snapshot-wire.ts).
 */
export class DeferredNet implements NetBackend {
  onFrame: ((frame: Uint8Array) => void) | undefined;
  private net: UdpNet | undefined;
  private opening: Promise<UdpNet> | undefined;
  private closed = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  /** Frames the guest sent before the ports were bound beyond MAX_HELD_FRAMES (dropped). */
  droppedBeforeOpen = 0;
  /** Frames the guest sent before the ports were bound and that went out once they were. */
  sentAfterOpen = 0;
  private held: Uint8Array[] = [];
  private readonly report: (line: string) => void;
  /**
   * Learned from the log while replaying. Until a frame teaches otherwise, its new mappings
   * start away from the old primary's first ones (a joined backup, whose log starts at a
   * snapshot, learns only part of the table).
   */
  readonly nat = new UdpNat(4096 + randomInt(8192));

  constructor(readonly forwards: readonly UdpForward[], opts: DeferredNetOptions = {}) {
    this.report = opts.report ?? ((line) => { process.stderr.write(`ftvm: ${line}\n`); });
  }

  /** A frame the guest received (replayed from the log, or live): learn its client's mapping. */
  learn(frame: Uint8Array): void {
    if (!this.net) this.nat.learn(frame);
  }

  /**
   * The table of the primary this backup joined, from its snapshot, before any frame of the log
   * is learned. One that could not be read is said in one line: the clients from before the
   * join then get their replies only when they ask again.
   */
  adoptNat(table: NatTable | Error): void {
    if (table instanceof Error) {
      this.report(`the join snapshot's NAT table is unusable (${table.message}); clients from before the join get replies only when they ask again`);
      return;
    }
    this.nat.import(table);
  }

  /** The bound backend, once open. */
  get udp(): UdpNet | undefined {
    return this.net;
  }

  /** Bind the forwards now (go-live), waiting while a port or address is not available. */
  open(): Promise<UdpNet> {
    this.opening ??= this.bindWaiting();
    return this.opening;
  }

  send(frame: Uint8Array): void {
    if (this.net) this.net.send(frame);
    else if (this.held.length < MAX_HELD_FRAMES) this.held.push(frame);
    else this.droppedBeforeOpen++;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.held = [];
    clearTimeout(this.retryTimer);
    this.wake?.();
    await this.opening?.then((n) => n.close(), () => undefined);
  }

  private async bindWaiting(): Promise<UdpNet> {
    const t0 = performance.now();
    let delayMs = FIRST_RETRY_MS;
    let reportedAt = -Infinity;
    for (;;) {
      if (this.closed) throw new Error('network closed before go-live');
      try {
        const net = await UdpNet.open(this.forwards, { nat: this.nat });
        if (this.closed) {
          await net.close();
          throw new Error('network closed before go-live');
        }
        net.onFrame = (f) => this.onFrame?.(f);
        this.net = net;
        const held = this.held;
        this.held = [];
        for (const f of held) net.send(f);
        this.sentAfterOpen += held.length;
        if (reportedAt > -Infinity) this.report(`service ports bound after ${Math.round(performance.now() - t0)} ms`);
        return net;
      } catch (e) {
        const msg = (e as Error).message;
        // Only a port held elsewhere or an address on its way here is worth waiting for.
        if (!/ is in use$| is not an address of this host$/.test(msg)) throw e;
        const now = performance.now();
        if (now - reportedAt >= REPORT_EVERY_MS) {
          reportedAt = now;
          this.report(`${msg.replace(/^--net: /, '')}: retrying, clients' datagrams wait for the new primary`);
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
