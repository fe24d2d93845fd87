import { virtioBlkMachine, type BlkRequestKind } from '../machines/virtio-blk.machine.js';
import type { ChartInspect, Output } from '../runtime/types.js';
import { DeviceChart } from './chart.js';
import type { Chain, VirtioDevice, VirtioMmio } from './virtio-mmio.js';

// virtio-blk (VIRTIO 1.1 §5.2) over the virtio-mmio transport. The device is deterministic:
// a request is seen at the same icount on every replica and numbered with a tag counted by
// the device. What the disk answers is not: reads are handed to the host (the primary only)
// and their data and status come back as logged inputs; writes and flushes leave as outputs
// (DESIGN §3 output rule) and their status comes back the same way. The virtio-blk chart
// (machines/virtio-blk.machine.ts) decides each waiting request's fate and the backend's
// attachment; parsing, range checks and byte copies stay here.

export const VIRTIO_ID_BLOCK = 2;
export const SECTOR_BYTES = 512;

export const T_IN = 0;
export const T_OUT = 1;
export const T_FLUSH = 4;
export const T_GET_ID = 8;

export const S_OK = 0;
export const S_IOERR = 1;
export const S_UNSUPP = 2;

/** Feature bit 9: the device has a write cache that T_FLUSH empties. */
const VIRTIO_BLK_F_FLUSH = 1 << 9;
const ID_BYTES = 20;
const HEADER_BYTES = 16;
/** Largest data transfer of one request: bounds the host's bounce buffers. */
export const MAX_REQUEST_BYTES = 16 << 20;

/** The chart's memo key of a submission (devices/chart.ts): its kind is all a step reads. */
const SUBMITTED_KEY: Record<BlkRequestKind, string> = { read: 'submitted:read', write: 'submitted:write', flush: 'submitted:flush' };

/** Where the device's requests go: the machine's I/O hub (which may have no backend: a backup). */
export interface BlkHost {
  /** A read the disk should serve; its data and status return through the env as inputs. */
  read(tag: number, sector: number, count: number): void;
  /** A request issued again on a backend attached at go-live (DESIGN §3): a read re-reads, a write or flush repeats. */
  reissue(p: PendingRequest): void;
  /** A write or flush, as an output under the output rule. */
  output(o: Output): void;
  icount(): number;
}

/** A request the device has seen and the log has not yet completed. */
export interface PendingRequest {
  tag: number;
  kind: BlkRequestKind;
  sector: number;
  count: number;
  /** The bytes to write (writes only). */
  data?: Uint8Array;
}

interface Pending extends PendingRequest {
  head: number;
  /** Device-writable segments: data (reads), then the status byte at the very end. */
  write: number[];
  writeBytes: number;
}

interface SavedPending extends Omit<Pending, 'data'> {
  data?: string;
}

export interface VirtioBlkState {
  /** Configuration, fixed at construction: saved so a replay can build the same device. */
  sectors: number;
  serial: string;
  nextTag: number;
  pending: SavedPending[];
}

export class VirtioBlk implements VirtioDevice {
  readonly deviceId = VIRTIO_ID_BLOCK;
  readonly queueCount = 1;
  readonly features: readonly [number, number] = [VIRTIO_BLK_F_FLUSH, 0];
  private t!: VirtioMmio;
  private nextTag = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly idBytes = new Uint8Array(ID_BYTES);
  /** The request the chart's effects act on: the one just submitted, or just completed. */
  private current: Pending | undefined;
  private completionStatus = 0;
  private chart: DeviceChart<typeof virtioBlkMachine>;
  private inspector: { inspect?: ChartInspect; id: string } = { id: 'virtio-blk' };

  constructor(
    /** Capacity in 512-byte sectors. */
    readonly sectors: number,
    private readonly host: BlkHost,
    /** The serial number GET_ID returns (QEMU's `serial=`), at most 20 bytes. */
    readonly serial = 'ftvm-disk0',
    opts: { inspect?: ChartInspect } = {},
  ) {
    if (!Number.isSafeInteger(sectors) || sectors < 0) throw new RangeError(`bad disk capacity ${sectors}`);
    const id = new TextEncoder().encode(serial);
    if (id.length > ID_BYTES) throw new RangeError(`disk serial longer than ${ID_BYTES} bytes`);
    this.idBytes.set(id);
    if (opts.inspect) this.inspector.inspect = opts.inspect;
    this.chart = this.startChart({ requests: 'idle', backend: 'deferred' });
  }

  /** Report the chart to `inspect` from now on, as actor `id` (restarted in its current state). */
  inspectWith(inspect: ChartInspect, id = this.inspector.id): void {
    this.inspector = { inspect, id };
    const value = this.state;
    this.chart.stop();
    this.chart = this.startChart(value);
  }

  /** The virtio-blk chart's actor (for inspection and tests). */
  get chartActor(): DeviceChart<typeof virtioBlkMachine> {
    return this.chart;
  }

  private get state(): { requests: string; backend: string } {
    return this.chart.getSnapshot().value as never;
  }

  /** Start the chart in `value`: at construction, or from a snapshot (no entry effects rerun). */
  private startChart(value: { requests: string; backend: string }): DeviceChart<typeof virtioBlkMachine> {
    const machine = virtioBlkMachine.provide({
      actions: {
        issueRead: () => {
          const p = this.current!;
          this.host.read(p.tag, p.sector, p.count);
        },
        emitOutput: () => {
          const p = this.current!;
          this.host.output({
            kind: 'disk-write', icount: this.host.icount(), tag: p.tag, sector: p.sector, data: p.data ?? new Uint8Array(0),
            ...(p.kind === 'flush' ? { flush: true } : {}),
          });
        },
        finishRequest: () => {
          const p = this.current!;
          const status = this.completionStatus;
          this.finish(p, status, p.kind === 'read' && status === S_OK ? p.writeBytes - 1 : 0);
        },
        forgetRequests: () => this.pending.clear(),
        reissuePending: () => {
          for (const p of this.pendingRequests()) this.host.reissue(p);
        },
      },
    });
    const snapshot = machine.resolveState({ value, context: {} });
    const { inspect, id } = this.inspector;
    return new DeviceChart(machine, snapshot, inspect ? { inspect, id } : undefined);
  }

  /**
   * The host connected the disk backend (boot on a primary, go-live on a backup): reads are
   * issued from now on, and the chart re-issues every request still waiting.
   */
  backendAttached(): void {
    if (this.state.backend === 'deferred') this.chart.send({ type: 'blk.backendAttached' });
  }

  /** The request waits for its completion: hand it to the chart. */
  private submit(p: Pending): void {
    p.tag = this.nextTag++;
    this.pending.set(p.tag, p);
    this.current = p;
    this.chart.send({ type: 'blk.submitted', kind: p.kind }, SUBMITTED_KEY[p.kind]);
    this.current = undefined;
  }

  attach(t: VirtioMmio): void {
    this.t = t;
  }

  configRead(offset: number, size: 1 | 2 | 4): number {
    // struct virtio_blk_config: u64 capacity at 0; nothing else is offered.
    if (offset >= 8) return 0;
    const lo = this.sectors % 2 ** 32, hi = Math.floor(this.sectors / 2 ** 32);
    const word = offset < 4 ? lo : hi;
    const shift = (offset & 3) * 8;
    const v = word >>> shift;
    return size === 4 ? v >>> 0 : size === 2 ? v & 0xffff : v & 0xff;
  }

  notify(q: number): void {
    if (q !== 0) return;
    for (let chain = this.t.pop(0); chain; chain = this.t.pop(0)) this.request(chain);
  }

  private request(c: Chain): void {
    if (c.readBytes < HEADER_BYTES || c.writeBytes < 1) {
      this.t.fail('virtio-blk request without a header or a status byte');
      return;
    }
    const h = this.t.gather(c.read, 0, HEADER_BYTES);
    const dv = new DataView(h.buffer);
    const type = dv.getUint32(0, true);
    const sectorLo = dv.getUint32(8, true), sectorHi = dv.getUint32(12, true);
    // Beyond 2^53 sectors nothing is in range; keep the number exact for the range check.
    const sector = sectorHi >= 0x20_0000 ? Infinity : sectorHi * 2 ** 32 + sectorLo;
    const p: Pending = { tag: 0, kind: 'read', sector: 0, count: 0, head: c.head, write: c.write, writeBytes: c.writeBytes };
    switch (type) {
      case T_IN: {
        const bytes = c.writeBytes - 1;
        const count = bytes / SECTOR_BYTES;
        if (!this.inRange(sector, bytes)) return this.finish(p, S_IOERR, 0);
        p.kind = 'read'; p.sector = sector; p.count = count;
        if (count === 0) return this.finish(p, S_OK, 0);
        return this.submit(p);
      }
      case T_OUT: {
        const bytes = c.readBytes - HEADER_BYTES;
        if (!this.inRange(sector, bytes)) return this.finish(p, S_IOERR, 0);
        if (bytes === 0) return this.finish(p, S_OK, 0);
        p.kind = 'write'; p.sector = sector; p.count = bytes / SECTOR_BYTES;
        p.data = this.t.gather(c.read, HEADER_BYTES, bytes);
        return this.submit(p);
      }
      case T_FLUSH:
        p.kind = 'flush';
        return this.submit(p);
      case T_GET_ID: {
        const n = this.t.scatter(c.write, 0, this.idBytes.subarray(0, Math.min(ID_BYTES, c.writeBytes - 1)));
        return this.finish(p, S_OK, n);
      }
      default:
        return this.finish(p, S_UNSUPP, 0);
    }
  }

  private inRange(sector: number, bytes: number): boolean {
    return bytes % SECTOR_BYTES === 0 && bytes <= MAX_REQUEST_BYTES && sector + bytes / SECTOR_BYTES <= this.sectors;
  }

  /** Write the status byte (the last writable byte), return the chain, interrupt. */
  private finish(p: Pending, status: number, dataBytes: number): void {
    this.t.scatter(p.write, p.writeBytes - 1, Uint8Array.of(status));
    this.t.push(0, p.head, dataBytes + 1);
  }

  /** Is `tag` a request still waiting for its completion? */
  isPending(tag: number): boolean {
    return this.pending.has(tag);
  }

  /** The data of read `tag` lands in guest memory (the logged `disk-read` input). */
  completeRead(tag: number, data: Uint8Array): boolean {
    const p = this.pending.get(tag);
    if (!p || p.kind !== 'read') return false;
    this.t.scatter(p.write, 0, data.subarray(0, p.writeBytes - 1));
    return true;
  }

  /** Request `tag` completes with `status` (the logged `disk-done` input). */
  complete(tag: number, status: number): boolean {
    const p = this.pending.get(tag);
    if (!p) return false;
    this.pending.delete(tag);
    this.current = p;
    this.completionStatus = status & 0xff;
    const last = this.pending.size === 0;
    this.chart.send({ type: 'blk.completed', last }, last ? 'completed:last' : 'completed');
    this.current = undefined;
    return true;
  }

  /** Requests without a completion, oldest first (for go-live: DESIGN §3 re-issue pending disk I/O). */
  pendingRequests(): PendingRequest[] {
    return [...this.pending.values()].map(({ tag, kind, sector, count, data }) => ({ tag, kind, sector, count, ...(data ? { data } : {}) }));
  }

  reset(): void {
    // Completions of forgotten requests are ignored: tags keep counting, so none is reused.
    if (this.pending.size > 0) this.chart.send({ type: 'blk.reset' });
  }

  save(): VirtioBlkState {
    return {
      sectors: this.sectors,
      serial: this.serial,
      nextTag: this.nextTag,
      pending: [...this.pending.values()].map((p) => ({
        ...p,
        write: [...p.write],
        data: p.data ? Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength).toString('base64') : undefined,
      })),
    };
  }

  load(state: unknown): void {
    const s = state as VirtioBlkState;
    this.nextTag = s.nextTag;
    this.pending.clear();
    for (const p of s.pending) {
      const { data, ...rest } = p;
      this.pending.set(p.tag, { ...rest, write: [...p.write], ...(data === undefined ? {} : { data: new Uint8Array(Buffer.from(data, 'base64')) }) });
    }
    // The requests region follows the saved requests; the backend is this host's, not the snapshot's.
    const backend = this.state.backend;
    this.chart.stop();
    this.chart = this.startChart({ requests: this.pending.size > 0 ? 'waiting' : 'idle', backend });
  }
}
