import { randomInt } from 'node:crypto';
import type { NetBackend } from './backend.js';
import { UdpNet, type UdpForward } from './net-udp.js';

const FIRST_RETRY_MS = 50;
// Short: at go-live the --on-live hook may be adding the address right now.
const MAX_RETRY_MS = 200;
const REPORT_EVERY_MS = 10_000;

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
 * NOTE the NAT table of the old primary died with it: a reply the new primary re-issues to a
 * client mapping it never saw is dropped (counted as "UDP to an unmapped port"), which a UDP
 * client sees as a lost datagram and retries; the guest answers the retry (dns is stateless,
 * kv replays its stored reply by request id).
 */
export class DeferredNet implements NetBackend {
  onFrame: ((frame: Uint8Array) => void) | undefined;
  private net: UdpNet | undefined;
  private opening: Promise<UdpNet> | undefined;
  private closed = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  /** Frames the guest sent before the ports were bound (dropped: no client mapping exists yet). */
  droppedBeforeOpen = 0;
  private readonly report: (line: string) => void;

  constructor(readonly forwards: readonly UdpForward[], opts: DeferredNetOptions = {}) {
    this.report = opts.report ?? ((line) => { process.stderr.write(`ftvm: ${line}\n`); });
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
    else this.droppedBeforeOpen++;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.wake?.();
    await this.opening?.then((n) => n.close(), () => undefined);
  }

  private async bindWaiting(): Promise<UdpNet> {
    const t0 = performance.now();
    let delayMs = FIRST_RETRY_MS;
    let reportedAt = -Infinity;
    // Away from the old primary's mappings, which started at the first port (net-udp.ts).
    const firstMapped = 4096 + randomInt(8192);
    for (;;) {
      if (this.closed) throw new Error('network closed before go-live');
      try {
        const net = await UdpNet.open(this.forwards, { firstMapped });
        if (this.closed) {
          await net.close();
          throw new Error('network closed before go-live');
        }
        net.onFrame = (f) => this.onFrame?.(f);
        this.net = net;
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
