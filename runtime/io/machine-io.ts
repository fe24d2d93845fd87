import type { Machine, VirtioFactory } from '../machine.js';
import type { Output } from '../types.js';
import type { LogEntryOf } from '../log/entry.js';
import { VirtioMmio } from '../../devices/virtio-mmio.js';
import { S_IOERR, S_OK, SECTOR_BYTES, VirtioBlk, type PendingRequest } from '../../devices/virtio-blk.js';
import { DEFAULT_MAC, VirtioNet } from '../../devices/virtio-net.js';
import type { DiskBackend, NetBackend } from './backend.js';
import type { MachineSnapshot } from '../snapshot.js';
import type { VirtioMmioState } from '../../devices/virtio-mmio.js';
import type { VirtioBlkState } from '../../devices/virtio-blk.js';
import type { VirtioNetState } from '../../devices/virtio-net.js';

export interface DiskOptions {
  /** Capacity in sectors; defaults to the backend's. A backup without a backend must give it. */
  sectors?: number;
  /** GET_ID answer (QEMU `serial=`); guests/qemu-io.sh uses "ftvm-disk0", the default. */
  serial?: string;
  /** Absent on a backup or a replay: the log brings the disk's answers. */
  backend?: DiskBackend;
}

export interface NetOptions {
  mac?: readonly number[];
  backend?: NetBackend;
  /**
   * Told each frame the guest received, live or replayed: a backup's deferred network learns
   * from the log the NAT mappings its guest's replies will need at go-live (deferred-net.ts).
   */
  onDelivered?: (frame: Uint8Array) => void;
}

/** An I/O result on its way into the guest: exactly the payload that is logged for it. */
export type IoInput =
  | Omit<LogEntryOf<'disk-read'>, 'seq' | 'icount'>
  | Omit<LogEntryOf<'disk-done'>, 'seq' | 'icount'>
  | Omit<LogEntryOf<'net-rx'>, 'seq' | 'icount'>;

/**
 * The disk and NIC a snapshot's machine had (no backends): a replay builds the same devices
 * from the log's first snapshot, so it needs neither the disk image nor the network.
 */
export function ioShapeOf(snap: MachineSnapshot): { disk?: DiskOptions; net?: NetOptions } {
  const out: { disk?: DiskOptions; net?: NetOptions } = {};
  for (const raw of snap.devices.virtio) {
    const s = raw as Partial<VirtioMmioState>;
    if (s.deviceId === 2 && !out.disk) {
      const b = s.device as VirtioBlkState;
      out.disk = { sectors: b.sectors, serial: b.serial };
    } else if (s.deviceId === 1 && !out.net) {
      out.net = { mac: (s.device as VirtioNetState).mac };
    }
  }
  return out;
}

/** Frames waiting for an RX buffer beyond this are dropped on arrival (as a full NIC drops). */
const MAX_WAITING_FRAMES = 256;

export interface IoStats {
  diskReads: number;
  diskWrites: number;
  diskFlushes: number;
  diskErrors: number;
  bytesRead: number;
  bytesWritten: number;
  framesIn: number;
  framesOut: number;
  framesDroppedFull: number;
}

/**
 * The machine's I/O hub between deterministic virtio devices and the host's nondeterministic
 * backends (DESIGN §2, §3). The devices hand it requests (a read to issue) and outputs (a
 * write, a flush, a frame) released under the output rule; the backends' completions wait
 * here until the env, at a batch boundary, applies them at a logged icount. Nothing here
 * changes guest state by itself: only `apply`, called by an env, does.
 */
export class MachineIo {
  blk: VirtioBlk | undefined;
  net: VirtioNet | undefined;
  /** Set by the live env: an input arrived (wake a sleeping hart). */
  onReady: (() => void) | undefined;
  readonly stats: IoStats = {
    diskReads: 0, diskWrites: 0, diskFlushes: 0, diskErrors: 0, bytesRead: 0, bytesWritten: 0,
    framesIn: 0, framesOut: 0, framesDroppedFull: 0,
  };

  private disk: DiskBackend | undefined;
  private netBackend: NetBackend | undefined;
  private readonly diskIn: IoInput[] = [];
  private diskHead = 0;
  private readonly netIn: Uint8Array[] = [];
  private netHead = 0;
  /** Writes and flushes run one after another, so a flush covers every write before it. */
  private writeChain: Promise<void> = Promise.resolve();
  private closed = false;
  /** The host died (abandon): nothing more reaches the backends. */
  private abandoned = false;

  constructor(
    private readonly diskOpts: DiskOptions | undefined,
    private readonly netOpts: NetOptions | undefined,
  ) {
    if (diskOpts && diskOpts.sectors === undefined && !diskOpts.backend) throw new RangeError('a disk needs a backend or a capacity in sectors');
  }

  /** The virtio slots this hub's devices take: the disk first (slot 7), then the NIC, as guests/qemu-io.sh. */
  factories(m: Machine): VirtioFactory[] {
    const out: VirtioFactory[] = [];
    const d = this.diskOpts;
    if (d) {
      const sectors = d.sectors ?? d.backend!.sectors;
      out.push((irq) => {
        this.blk = new VirtioBlk(sectors, {
          read: (tag, sector, count) => this.issueRead(tag, sector, count),
          reissue: (p) => this.reissue(p),
          output: (o) => m.onOutput(o),
          icount: () => m.icount,
        }, d.serial);
        const mmio = new VirtioMmio(this.blk, irq, m.bus);
        // A backend attached before the device existed (a primary's, at boot).
        if (this.disk) this.blk.backendAttached();
        return mmio;
      });
    }
    const n = this.netOpts;
    if (n) {
      out.push((irq) => {
        this.net = new VirtioNet({
          output: (o) => m.onOutput(o),
          icount: () => m.icount,
          connect: () => { this.netBackend!.onFrame = (f) => this.frameFromHost(f); },
        }, n.mac ?? DEFAULT_MAC);
        const mmio = new VirtioMmio(this.net, irq, m.bus);
        if (this.netBackend) this.net.linkUp();
        return mmio;
      });
    }
    if (d?.backend || n?.backend) this.attach({ ...(d?.backend ? { disk: d.backend } : {}), ...(n?.backend ? { net: n.backend } : {}) });
    return out;
  }

  /** The attached network backend: a join snapshot carries its NAT table (ft/snapshot-wire.ts). */
  get netAttached(): NetBackend | undefined {
    return this.netBackend;
  }

  /** Backends connected (false on a backup or a replay). */
  get isLive(): boolean {
    return this.disk !== undefined || this.netBackend !== undefined;
  }

  /**
   * Connect the host's backends: at boot on a primary, or at go-live on a backup. The device
   * charts take it from there: virtio-blk issues reads from now on and re-issues every request
   * it has seen without a completion in the log (DESIGN §3: reads read the shared disk again,
   * writes and flushes are repeated, they are idempotent); virtio-net lets the backend's frames in.
   */
  attach(b: { disk?: DiskBackend; net?: NetBackend }): void {
    if (b.disk) {
      if (this.blk && b.disk.sectors < this.blk.sectors) throw new RangeError(`${b.disk.name}: ${b.disk.sectors} sectors, the guest saw ${this.blk.sectors}`);
      this.disk = b.disk;
      this.blk?.backendAttached();
    }
    if (b.net) {
      this.netBackend = b.net;
      this.net?.linkUp();
    }
  }

  /** Disk requests seen by the device with no completion yet, oldest first. */
  pending(): PendingRequest[] {
    return this.blk?.pendingRequests() ?? [];
  }

  private reissue(p: PendingRequest): void {
    if (p.kind === 'read') this.issueRead(p.tag, p.sector, p.count);
    else this.execute({ kind: 'disk-write', icount: 0, tag: p.tag, sector: p.sector, data: p.data ?? new Uint8Array(0), ...(p.kind === 'flush' ? { flush: true } : {}) });
  }

  // ---- requests and released outputs (host side) ----

  /** The virtio-blk chart's `issueRead`: only with a backend attached (the chart's `backend.attached`). */
  private issueRead(tag: number, sector: number, count: number): void {
    const disk = this.disk!;
    this.stats.diskReads++;
    disk.read(sector, count).then(
      (data) => {
        this.stats.bytesRead += data.length;
        if (data.length !== count * SECTOR_BYTES) throw new Error('short read');
        this.arrive({ type: 'disk-read', tag, data }, { type: 'disk-done', tag, status: S_OK });
      },
    ).catch(() => {
      this.stats.diskErrors++;
      this.arrive({ type: 'disk-done', tag, status: S_IOERR });
    });
  }

  /**
   * Execute an output released under the output rule: a frame goes to the network, a write or
   * flush to the disk (its status returns as an input). Console and power are not I/O: false.
   */
  execute(o: Output): boolean {
    if (this.abandoned) return o.kind === 'net' || o.kind === 'disk-write';
    if (o.kind === 'net') {
      this.stats.framesOut++;
      // Only over a link the virtio-net chart has up (a replaying backup's frames go nowhere).
      if (this.net?.isLinkUp) this.netBackend!.send(o.frame);
      return true;
    }
    if (o.kind !== 'disk-write') return false;
    const disk = this.disk;
    if (!disk) return true;
    const { tag, sector, data, flush } = o;
    this.writeChain = this.writeChain.then(async () => {
      // Queued behind a write when the host died: never issued, as in a killed process.
      if (this.abandoned) return;
      try {
        if (flush) {
          this.stats.diskFlushes++;
          await disk.flush();
        } else {
          this.stats.diskWrites++;
          await disk.write(sector, data);
          this.stats.bytesWritten += data.length;
        }
        if (tag !== undefined) this.arrive({ type: 'disk-done', tag, status: S_OK });
      } catch {
        this.stats.diskErrors++;
        if (tag !== undefined) this.arrive({ type: 'disk-done', tag, status: S_IOERR });
      }
    });
    return true;
  }

  private arrive(...inputs: IoInput[]): void {
    if (this.closed) return;
    for (const i of inputs) this.diskIn.push(i);
    this.onReady?.();
  }

  private frameFromHost(frame: Uint8Array): void {
    if (this.closed || !this.net) return;
    if (this.netIn.length - this.netHead >= MAX_WAITING_FRAMES) {
      this.stats.framesDroppedFull++;
      return;
    }
    this.netIn.push(frame);
    this.onReady?.();
  }

  // ---- the env side: between instructions only ----

  /** Frames are waiting but the guest has no RX buffer posted: the env should look again soon. */
  get framesWaiting(): boolean {
    return this.netHead < this.netIn.length;
  }

  /**
   * The guest has network input it has not read yet: frames queued here for it, or delivered
   * and not yet read (VirtioNet.framesInGuest) beyond the one it is answering (a driver
   * re-posts a frame's buffer after handling it, and the answer comes first). A server with
   * this is about to answer again (a primary's ack clock lets those answers share a chunk).
   * A hint only: nothing logged.
   */
  get netInputInHand(): boolean {
    return this.framesWaiting || (this.net !== undefined && this.net.framesInGuest > 1);
  }

  /**
   * The next input to apply now, taken off its queue; undefined when none is due. A disk
   * completion for a request the device no longer knows (already completed: a duplicate after
   * go-live, or dropped by a device reset) is discarded unlogged. A frame waits until the guest
   * has posted a buffer: only delivered frames are logged, so either choice replays the same.
   */
  takeDue(): IoInput | undefined {
    while (this.diskHead < this.diskIn.length) {
      const c = this.diskIn[this.diskHead++]!;
      if (this.diskHead === this.diskIn.length) {
        this.diskIn.length = 0;
        this.diskHead = 0;
      }
      if (c.type !== 'net-rx' && this.blk?.isPending(c.tag)) return c;
    }
    if (this.netHead < this.netIn.length && this.net?.canReceive()) {
      const frame = this.netIn[this.netHead++]!;
      if (this.netHead === this.netIn.length) {
        this.netIn.length = 0;
        this.netHead = 0;
      }
      this.stats.framesIn++;
      return { type: 'net-rx', frame };
    }
    return undefined;
  }

  /** Something is due now (for an idle env deciding whether to sleep). */
  hasDue(): boolean {
    for (let i = this.diskHead; i < this.diskIn.length; i++) {
      const c = this.diskIn[i]!;
      if (c.type !== 'net-rx' && this.blk?.isPending(c.tag)) return true;
    }
    return this.framesWaiting && this.net?.canReceive() === true;
  }

  /**
   * Apply one input to the devices (live: just taken by takeDue; replay: from the log). False
   * when the devices cannot take it (no such request, no RX buffer): on replay, a divergence.
   */
  apply(c: IoInput): boolean {
    switch (c.type) {
      case 'disk-read': return this.blk?.completeRead(c.tag, c.data) ?? false;
      case 'disk-done': return this.blk?.complete(c.tag, c.status) ?? false;
      case 'net-rx': {
        if (!this.net?.receive(c.frame)) return false;
        this.netOpts?.onDelivered?.(c.frame);
        return true;
      }
    }
  }

  /** Every write and flush released so far has reached the disk (or failed). */
  async drain(): Promise<void> {
    await this.writeChain;
  }

  /**
   * The host died (a replica's injected crash, pair.ts): let go of the backends at once, as a
   * killed process's exit does: the ports unbound, the image's lock released, an NBD connection
   * dropped. No flush, no write that waited its turn, no completion taken; a write already
   * issued ends as the kernel ends it. The go-live of the other replica re-issues every
   * request with no completion in the log (DESIGN §3).
   */
  async abandon(): Promise<void> {
    this.closed = true;
    this.abandoned = true;
    const d = this.disk;
    await Promise.all([d ? (d.abandon ? d.abandon() : d.close()) : undefined, this.netBackend?.close()]);
  }

  /** Stop accepting completions and close the backends. */
  async close(): Promise<void> {
    this.closed = true;
    await this.writeChain;
    await Promise.all([this.disk?.close(), this.netBackend?.close()]);
  }
}
