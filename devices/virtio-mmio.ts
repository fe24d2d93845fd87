import { virtioMachine } from '../machines/virtio.machine.js';
import type { ChartInspect, IrqLine, MmioDevice } from '../runtime/types.js';
import { DeviceChart } from './chart.js';
import type { Bus } from '../runtime/bus.js';

// virtio-mmio version 2 ("modern") transport and split virtqueues, written once for every
// device (TinyEMU's virtio.c). References: VIRTIO 1.1 §2.6 (split virtqueues), §4.2.2 (MMIO
// registers), §2.1 (device status). Devices see only chains of guest-RAM segments.

const MAGIC_VALUE = 0x000;
const VERSION = 0x004;
const DEVICE_ID = 0x008;
const VENDOR_ID = 0x00c;
const DEVICE_FEATURES = 0x010;
const DEVICE_FEATURES_SEL = 0x014;
const DRIVER_FEATURES = 0x020;
const DRIVER_FEATURES_SEL = 0x024;
const QUEUE_SEL = 0x030;
const QUEUE_NUM_MAX = 0x034;
const QUEUE_NUM = 0x038;
const QUEUE_READY = 0x044;
const QUEUE_NOTIFY = 0x050;
const INTERRUPT_STATUS = 0x060;
const INTERRUPT_ACK = 0x064;
const STATUS = 0x070;
const QUEUE_DESC_LOW = 0x080;
const QUEUE_DESC_HIGH = 0x084;
const QUEUE_DRIVER_LOW = 0x090;
const QUEUE_DRIVER_HIGH = 0x094;
const QUEUE_DEVICE_LOW = 0x0a0;
const QUEUE_DEVICE_HIGH = 0x0a4;
const CONFIG_GENERATION = 0x0fc;
const CONFIG = 0x100;

export const VIRTIO_MAGIC = 0x7472_6976; // "virt"
export const QEMU_VENDOR = 0x554d_4551; // "QEMU"

export const STATUS_ACKNOWLEDGE = 1;
export const STATUS_DRIVER = 2;
export const STATUS_DRIVER_OK = 4;
export const STATUS_FEATURES_OK = 8;
export const STATUS_DEVICE_NEEDS_RESET = 0x40;
export const STATUS_FAILED = 0x80;

/** Interrupt status bits (§4.2.2): a used buffer, a configuration change. */
export const INT_USED = 1;
export const INT_CONFIG = 2;

/** Feature bit 32: a modern (non-legacy) device; this transport offers nothing else. */
export const VIRTIO_F_VERSION_1_HI = 1; // bit 0 of the high word

const DESC_F_NEXT = 1;
const DESC_F_WRITE = 2;
const DESC_F_INDIRECT = 4;
const DESC_BYTES = 16;

/** Largest queue offered (QEMU offers 256 for blk and net too). */
export const QUEUE_MAX = 256;

/**
 * One descriptor chain taken from the available ring: its head (returned in the used ring),
 * the device-readable segments, then the device-writable ones, as (address, length) pairs.
 */
export interface Chain {
  head: number;
  read: number[];
  readBytes: number;
  write: number[];
  writeBytes: number;
}

/** The part a device adds to the transport: identity, features, config space, queue work. */
export interface VirtioDevice {
  readonly deviceId: number;
  readonly queueCount: number;
  /** Feature bits as [low word, high word]; VERSION_1 is added by the transport. */
  readonly features: readonly [number, number];
  /** Bind to the transport (for queue access and interrupts). */
  attach(t: VirtioMmio): void;
  configRead(offset: number, size: 1 | 2 | 4): number;
  /** The driver kicked queue `q`: take what is available. */
  notify(q: number): void;
  /** Status was written 0, or the device failed: forget requests (completions for them are ignored). */
  reset(): void;
  save(): unknown;
  load(state: unknown): void;
  /** Report the device's own chart (virtio-blk, virtio-net) to `inspect` as actor `id`. */
  inspectWith?(inspect: ChartInspect, id: string): void;
}

interface QueueState {
  num: number;
  ready: boolean;
  desc: number;
  avail: number;
  used: number;
  /** Next available-ring index the device will read (free-running u16). */
  lastAvail: number;
  /** The used ring's idx as the device last wrote it (free-running u16). */
  usedIdx: number;
}

export interface VirtioMmioState {
  /** Which device this is (a snapshot tells a replay what to plug in). */
  deviceId: number;
  status: number;
  deviceFeaturesSel: number;
  driverFeaturesSel: number;
  driverFeatures: [number, number];
  queueSel: number;
  interruptStatus: number;
  configGeneration: number;
  queues: QueueState[];
  /** Why the device asked for a reset, for diagnosis (deterministic text). */
  broken: string;
  device: unknown;
}

/** A queue's registers; whether it is ready is the chart's (`queuesReady`). */
type Queue = Omit<QueueState, 'ready'>;

const freshQueue = (): Queue => ({ num: 0, desc: 0, avail: 0, used: 0, lastAvail: 0, usedIdx: 0 });

type Phase = 'reset' | 'acknowledged' | 'driverFound' | 'featuresOk' | 'ready' | 'needsReset' | 'failed';

/** The phase a saved Status value names, by the chart's own order (FAILED first). */
function phaseOf(status: number): Phase {
  if (status & STATUS_FAILED) return 'failed';
  if (status & STATUS_DEVICE_NEEDS_RESET) return 'needsReset';
  if (status & STATUS_DRIVER_OK) return 'ready';
  if (status & STATUS_FEATURES_OK) return 'featuresOk';
  if (status & STATUS_DRIVER) return 'driverFound';
  if (status & STATUS_ACKNOWLEDGE) return 'acknowledged';
  return 'reset';
}

/** A guest mistake that makes the device stop and ask for a reset; never escapes the transport. */
export class VirtqError extends Error {}

/**
 * The virtio-mmio register window plus split-virtqueue access to guest RAM. The virtio chart
 * (machines/virtio.machine.ts) decides the device's phase (requests are served only in
 * `ready`), DEVICE_NEEDS_RESET, the reset, and which queues are ready; this class keeps the
 * registers and supplies the chart's effects. Every guest
 * address is checked against RAM before it is touched: a bad chain (address outside RAM, a
 * loop, a readable segment after a writable one, a queue that is not ready) sets
 * DEVICE_NEEDS_RESET and raises a configuration interrupt (VIRTIO 1.1 §2.1.2), and the
 * request is dropped. The host never throws, hangs or reads outside RAM.
 */
export class VirtioMmio implements MmioDevice {
  private status = 0;
  private deviceFeaturesSel = 0;
  private driverFeaturesSel = 0;
  private driverFeatures: [number, number] = [0, 0];
  private queueSel = 0;
  private interruptStatus = 0;
  private configGeneration = 0;
  private queues: Queue[];
  private broken = '';
  private readonly view: DataView;
  private chart: DeviceChart<typeof virtioMachine>;
  private inspector: { inspect?: ChartInspect; id: string };

  constructor(
    readonly device: VirtioDevice,
    private readonly irq: IrqLine,
    private readonly bus: Bus,
    opts: { inspect?: ChartInspect } = {},
  ) {
    this.view = new DataView(bus.ram.buffer, bus.ram.byteOffset, bus.ram.byteLength);
    this.queues = Array.from({ length: device.queueCount }, freshQueue);
    device.attach(this);
    this.inspector = { ...opts, id: 'virtio' };
    this.chart = this.startChart('reset', 0);
  }

  /** Report the chart to `inspect` from now on, as actor `id` (restarted in its current state). */
  inspectWith(inspect: ChartInspect, id = this.inspector.id): void {
    this.inspector = { inspect, id };
    const snap = this.chart.getSnapshot();
    this.chart.stop();
    this.chart = this.startChart(snap.value, snap.context.queuesReady);
  }

  /** The virtio chart's actor (for inspection and tests). */
  get chartActor(): DeviceChart<typeof virtioMachine> {
    return this.chart;
  }

  /** Start the chart in `phase`: at construction, or from a snapshot (no entry effects rerun). */
  private startChart(phase: Phase, queuesReady: number): DeviceChart<typeof virtioMachine> {
    const machine = virtioMachine.provide({
      actions: {
        resetDevice: () => this.reset(),
        raiseConfigInterrupt: () => {
          this.status |= STATUS_DEVICE_NEEDS_RESET;
          this.device.reset();
          this.interruptStatus |= INT_CONFIG;
          this.updateIrq();
        },
      },
    });
    const snapshot = machine.resolveState({ value: phase, context: { queuesReady } });
    const { inspect, id } = this.inspector;
    return new DeviceChart(machine, snapshot, inspect ? { inspect, id } : undefined);
  }

  /** The driver has set DRIVER_OK and the device has not failed: requests may be served. */
  get live(): boolean {
    return this.chart.getSnapshot().value === 'ready';
  }

  /** Queue `qi` exists and is ready (QueueReady = 1), by the chart. */
  private isReady(qi: number): boolean {
    return qi < this.queues.length && (this.chart.getSnapshot().context.queuesReady & (1 << qi)) !== 0;
  }

  get deviceStatus(): number {
    return this.status;
  }

  /** Why the device needs a reset ('' when it does not). */
  get failure(): string {
    return this.broken;
  }

  read(offset: number, size: 1 | 2 | 4): number {
    if (offset >= CONFIG) return this.device.configRead(offset - CONFIG, size) >>> 0;
    if (size !== 4) return 0; // §4.2.2: the control registers are 32-bit only
    const q = this.queues[this.queueSel];
    switch (offset) {
      case MAGIC_VALUE: return VIRTIO_MAGIC;
      case VERSION: return 2;
      case DEVICE_ID: return this.device.deviceId;
      case VENDOR_ID: return QEMU_VENDOR;
      case DEVICE_FEATURES:
        if (this.deviceFeaturesSel === 0) return this.device.features[0] >>> 0;
        if (this.deviceFeaturesSel === 1) return (this.device.features[1] | VIRTIO_F_VERSION_1_HI) >>> 0;
        return 0;
      case QUEUE_NUM_MAX: return q ? QUEUE_MAX : 0;
      case QUEUE_READY: return this.isReady(this.queueSel) ? 1 : 0;
      case INTERRUPT_STATUS: return this.interruptStatus;
      case STATUS: return this.status;
      case CONFIG_GENERATION: return this.configGeneration;
      default: return 0;
    }
  }

  write(offset: number, size: 1 | 2 | 4, value: number): void {
    if (offset >= CONFIG || size !== 4) return; // config space is read-only for blk and net
    value >>>= 0;
    const q = this.queues[this.queueSel];
    const ready = this.isReady(this.queueSel);
    switch (offset) {
      case DEVICE_FEATURES_SEL: this.deviceFeaturesSel = value; return;
      case DRIVER_FEATURES_SEL: this.driverFeaturesSel = value; return;
      case DRIVER_FEATURES:
        // §3.1.1: features are fixed once FEATURES_OK is set.
        if (this.driverFeaturesSel < 2 && !(this.status & STATUS_FEATURES_OK)) this.driverFeatures[this.driverFeaturesSel] = value;
        return;
      case QUEUE_SEL: this.queueSel = value; return;
      case QUEUE_NUM:
        // A power of two up to the maximum (§2.6: split queue sizes are powers of 2).
        if (q && !ready) q.num = value >= 1 && value <= QUEUE_MAX && (value & (value - 1)) === 0 ? value : 0;
        return;
      case QUEUE_READY:
        if (!q) return;
        if (value & 1) {
          q.lastAvail = 0;
          q.usedIdx = 0;
        }
        if ((value & 1) === 1 !== ready) this.chart.send({ type: 'virtio.queueReadyWritten', queue: this.queueSel, ready: !ready }, `q${this.queueSel}:${!ready}`);
        return;
      case QUEUE_NOTIFY:
        if (value < this.queues.length) this.kick(value);
        return;
      case INTERRUPT_ACK:
        this.interruptStatus &= ~value;
        this.updateIrq();
        return;
      case STATUS: this.writeStatus(value); return;
      case QUEUE_DESC_LOW: if (q && !ready) q.desc = value; return;
      case QUEUE_DRIVER_LOW: if (q && !ready) q.avail = value; return;
      case QUEUE_DEVICE_LOW: if (q && !ready) q.used = value; return;
      case QUEUE_DESC_HIGH:
      case QUEUE_DRIVER_HIGH:
      case QUEUE_DEVICE_HIGH:
        // RAM lies below 4 GiB: a high word makes the ring unreachable, caught when used.
        if (q && !ready && value !== 0) {
          if (offset === QUEUE_DESC_HIGH) q.desc = -1;
          else if (offset === QUEUE_DRIVER_HIGH) q.avail = -1;
          else q.used = -1;
        }
        return;
      default:
        return;
    }
  }

  /** Keep the bits, and let the chart decide what they mean (status writes are rare: no cost). */
  private writeStatus(value: number): void {
    if (value === 0) {
      this.chart.send({ type: 'virtio.statusWritten', status: 0 }, 'status0');
      return;
    }
    value &= 0xff;
    if ((value & STATUS_FEATURES_OK) && !(this.status & STATUS_FEATURES_OK)) {
      // Accept only a subset of what was offered, and only as a modern driver (§6.1).
      const lo = this.driverFeatures[0] >>> 0, hi = this.driverFeatures[1] >>> 0;
      const offLo = this.device.features[0] >>> 0, offHi = (this.device.features[1] | VIRTIO_F_VERSION_1_HI) >>> 0;
      const ok = (lo & ~offLo) === 0 && (hi & ~offHi) === 0 && (hi & VIRTIO_F_VERSION_1_HI) !== 0;
      if (!ok) value &= ~STATUS_FEATURES_OK;
    }
    // NEEDS_RESET is the device's to set; the driver cannot clear it without a reset.
    this.status = (value & ~STATUS_DEVICE_NEEDS_RESET) | (this.status & STATUS_DEVICE_NEEDS_RESET);
    const status = value & ~STATUS_DEVICE_NEEDS_RESET;
    this.chart.send({ type: 'virtio.statusWritten', status }, `status${status}`);
  }

  private reset(): void {
    this.status = 0;
    this.deviceFeaturesSel = 0;
    this.driverFeaturesSel = 0;
    this.driverFeatures = [0, 0];
    this.queueSel = 0;
    this.interruptStatus = 0;
    this.broken = '';
    this.queues = Array.from({ length: this.device.queueCount }, freshQueue);
    this.device.reset();
    this.updateIrq();
  }

  private kick(qi: number): void {
    if (!this.live) return;
    const q = this.queues[qi]!;
    if (!this.isReady(qi) || q.num === 0) {
      this.fail(`queue ${qi} notified while not ready`);
      return;
    }
    this.device.notify(qi);
  }

  /** Set DEVICE_NEEDS_RESET and tell the driver (§2.1.2). Requests stop until the driver resets. */
  fail(why: string): void {
    // Only a device serving requests can find a mistake in them (the chart's `ready`).
    if (!this.live) return;
    this.broken = why;
    this.chart.send({ type: 'virtio.broken' });
  }

  private updateIrq(): void {
    this.irq.set(this.interruptStatus !== 0);
  }

  // ---- split virtqueue access (§2.6) ----

  private ramOff(addr: number, len: number): number {
    const off = addr - this.bus.ramBase;
    if (addr < 0 || off < 0 || len < 0 || off + len > this.bus.ramBytes) {
      throw new VirtqError(`address 0x${(addr >>> 0).toString(16)}+${len} is outside RAM`);
    }
    return off;
  }

  /**
   * Chains the driver has made available on queue `qi` and the device has not taken. With
   * `failOnBad` false a bad ring reads as empty and changes nothing: the env peeks with it at
   * boundaries where it may log nothing, and an unlogged state change would diverge.
   */
  availableCount(qi: number, failOnBad = true): number {
    const q = this.queues[qi];
    if (!q || !this.isReady(qi) || !this.live) return 0;
    if (!failOnBad) {
      const off = q.avail - this.bus.ramBase;
      if (q.avail < 0 || off < 0 || off + 4 + 2 * q.num > this.bus.ramBytes) return 0;
      const n = (this.view.getUint16(off + 2, true) - q.lastAvail) & 0xffff;
      return n > q.num ? 0 : n;
    }
    try {
      const off = this.ramOff(q.avail, 4 + 2 * q.num);
      const idx = this.view.getUint16(off + 2, true);
      const n = (idx - q.lastAvail) & 0xffff;
      if (n > q.num) throw new VirtqError(`avail idx ${idx} is ${n} ahead of ${q.lastAvail}, more than the ${q.num} entries`);
      return n;
    } catch (e) {
      this.failOn(e);
      return 0;
    }
  }

  /**
   * Take the next available chain of queue `qi`, or undefined if there is none or the chain
   * is bad (then the device has failed: see `fail`).
   */
  pop(qi: number): Chain | undefined {
    if (this.availableCount(qi) === 0) return undefined;
    const q = this.queues[qi]!;
    try {
      const availOff = this.ramOff(q.avail, 4 + 2 * q.num);
      const head = this.view.getUint16(availOff + 4 + 2 * (q.lastAvail % q.num), true);
      q.lastAvail = (q.lastAvail + 1) & 0xffff;
      return this.walk(q, head);
    } catch (e) {
      this.failOn(e);
      return undefined;
    }
  }

  private walk(q: Queue, head: number): Chain {
    const chain: Chain = { head, read: [], readBytes: 0, write: [], writeBytes: 0 };
    if (head >= q.num) throw new VirtqError(`chain head ${head} beyond queue size ${q.num}`);
    let table = this.ramOff(q.desc, DESC_BYTES * q.num);
    let size = q.num;
    let i = head;
    let indirect = false;
    // Each descriptor may appear once: more steps than descriptors means a loop (§2.6.5.3.1).
    for (let steps = 0; ; steps++) {
      if (steps >= size) throw new VirtqError('descriptor chain loops');
      const d = table + DESC_BYTES * i;
      const addrLo = this.view.getUint32(d, true);
      const addrHi = this.view.getUint32(d + 4, true);
      const len = this.view.getUint32(d + 8, true);
      const flags = this.view.getUint16(d + 12, true);
      const next = this.view.getUint16(d + 14, true);
      if (flags & DESC_F_INDIRECT) {
        // §2.6.5.3: one indirect table per chain, not nested, no NEXT beside it.
        if (indirect || (flags & DESC_F_NEXT)) throw new VirtqError('bad indirect descriptor');
        if (addrHi !== 0 || len === 0 || len % DESC_BYTES !== 0 || len / DESC_BYTES > 0xffff) throw new VirtqError('bad indirect table');
        table = this.ramOff(addrLo, len);
        size = len / DESC_BYTES;
        indirect = true;
        i = 0;
        steps = -1;
        continue;
      }
      if (addrHi !== 0) throw new VirtqError('descriptor address above 4 GiB');
      this.ramOff(addrLo, len);
      if (flags & DESC_F_WRITE) {
        chain.write.push(addrLo, len);
        chain.writeBytes += len;
      } else {
        if (chain.write.length > 0) throw new VirtqError('device-readable descriptor after a writable one');
        chain.read.push(addrLo, len);
        chain.readBytes += len;
      }
      if (chain.readBytes + chain.writeBytes > 0x1000_0000) throw new VirtqError('chain longer than 256 MiB');
      if (!(flags & DESC_F_NEXT)) return chain;
      if (next >= size) throw new VirtqError(`next descriptor ${next} beyond table of ${size}`);
      i = next;
    }
  }

  /** Return a chain to the driver with `written` bytes written, and interrupt (§2.6.8). */
  push(qi: number, head: number, written: number): void {
    const q = this.queues[qi];
    if (!q || !this.isReady(qi) || !this.live) return;
    try {
      const off = this.ramOff(q.used, 4 + 8 * q.num);
      const slot = off + 4 + 8 * (q.usedIdx % q.num);
      this.view.setUint32(slot, head, true);
      this.view.setUint32(slot + 4, written >>> 0, true);
      q.usedIdx = (q.usedIdx + 1) & 0xffff;
      this.view.setUint16(off + 2, q.usedIdx, true);
      this.bus.noteWrite(slot, 8);
      this.bus.noteWrite(off + 2, 2);
    } catch (e) {
      this.failOn(e);
      return;
    }
    this.interruptStatus |= INT_USED;
    this.updateIrq();
  }

  /** Copy up to `max` bytes the driver offered in `segs` (from byte `skip`) into a new array. */
  gather(segs: readonly number[], skip: number, max: number): Uint8Array {
    let total = 0;
    for (let s = 1; s < segs.length; s += 2) total += segs[s]!;
    const n = Math.max(0, Math.min(max, total - skip));
    const out = new Uint8Array(n);
    let at = 0;
    for (let s = 0; s < segs.length && at < n; s += 2) {
      let addr = segs[s]!, len = segs[s + 1]!;
      if (skip >= len) { skip -= len; continue; }
      addr += skip; len -= skip; skip = 0;
      const take = Math.min(len, n - at);
      const off = addr - this.bus.ramBase; // checked in walk()
      out.set(this.bus.ram.subarray(off, off + take), at);
      at += take;
    }
    return out;
  }

  /** Write `data` into the device-writable segments `segs` from byte `skip`; returns bytes written. */
  scatter(segs: readonly number[], skip: number, data: Uint8Array): number {
    let at = 0;
    for (let s = 0; s < segs.length && at < data.length; s += 2) {
      let addr = segs[s]!, len = segs[s + 1]!;
      if (skip >= len) { skip -= len; continue; }
      addr += skip; len -= skip; skip = 0;
      const take = Math.min(len, data.length - at);
      const off = addr - this.bus.ramBase; // checked in walk()
      this.bus.ram.set(data.subarray(at, at + take), off);
      this.bus.noteWrite(off, take);
      at += take;
    }
    return at;
  }

  private failOn(e: unknown): void {
    if (!(e instanceof VirtqError)) throw e;
    this.fail(e.message);
  }

  save(): VirtioMmioState {
    return {
      deviceId: this.device.deviceId,
      status: this.status,
      deviceFeaturesSel: this.deviceFeaturesSel,
      driverFeaturesSel: this.driverFeaturesSel,
      driverFeatures: [this.driverFeatures[0], this.driverFeatures[1]],
      queueSel: this.queueSel,
      interruptStatus: this.interruptStatus,
      configGeneration: this.configGeneration,
      queues: this.queues.map((q, qi) => ({ ...q, ready: this.isReady(qi) })),
      broken: this.broken,
      device: this.device.save(),
    };
  }

  load(state: unknown): void {
    const s = state as VirtioMmioState;
    this.status = s.status;
    this.deviceFeaturesSel = s.deviceFeaturesSel;
    this.driverFeaturesSel = s.driverFeaturesSel;
    this.driverFeatures = [s.driverFeatures[0], s.driverFeatures[1]];
    this.queueSel = s.queueSel;
    this.interruptStatus = s.interruptStatus;
    this.configGeneration = s.configGeneration;
    this.queues = s.queues.map(({ ready: _ready, ...q }) => ({ ...q }));
    this.broken = s.broken;
    // The chart restarts in the phase the saved Status names, with the saved queues ready.
    const queuesReady = s.queues.reduce((bits, q, qi) => (q.ready ? bits | (1 << qi) : bits), 0);
    this.chart.stop();
    this.chart = this.startChart(phaseOf(s.status), queuesReady);
    // After the transport: a device may look at its restored queues.
    this.device.load(s.device);
    this.updateIrq();
  }
}
