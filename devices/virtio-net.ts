import { virtioNetMachine } from '../machines/virtio-net.machine.js';
import type { ChartInspect, Output } from '../runtime/types.js';
import { DeviceChart } from './chart.js';
import type { VirtioDevice, VirtioMmio } from './virtio-mmio.js';

// virtio-net (VIRTIO 1.1 §5.1): receive queue 0, transmit queue 1, a fixed MAC, the 12-byte
// virtio_net_hdr of VERSION_1 (num_buffers included), no offloads, no control queue.
// Transmission is deterministic and synchronous: the frame is copied out at the notify, leaves
// as an output, and the buffer goes back at once. Reception is an input: the env hands a frame
// over between instructions (logged as `net-rx`), only when the guest has a buffer posted.
// The virtio-net chart (machines/virtio-net.machine.ts) decides when that is (`rx.ready`) and
// whether the host network is connected (`link`); the frame copies stay here.

export const VIRTIO_ID_NET = 1;
export const NET_HDR_BYTES = 12;
/** Ethernet II without FCS: 14-byte header + 1500-byte payload. */
export const ETH_MAX_FRAME = 1514;
const ETH_MIN_FRAME = 14;
const VIRTIO_NET_F_MAC = 1 << 5;
const RX = 0;
const TX = 1;

export const DEFAULT_MAC: readonly number[] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

export interface NetHost {
  output(o: Output): void;
  icount(): number;
  /** Let the network backend's frames in (the chart's `connectBackend`, at link up). */
  connect(): void;
}

export interface VirtioNetState {
  mac: number[];
  txFrames: number;
  txDropped: number;
  rxFrames: number;
  /** The chart's `rx.ready`: the guest has posted a receive buffer and notified (absent in older snapshots). */
  rxReady?: boolean;
}

export class VirtioNet implements VirtioDevice {
  readonly deviceId = VIRTIO_ID_NET;
  readonly queueCount = 2;
  readonly features: readonly [number, number] = [VIRTIO_NET_F_MAC, 0];
  private t!: VirtioMmio;
  private txFrames = 0;
  private txDropped = 0;
  private rxFrames = 0;
  /**
   * The most receive buffers the guest has had posted at once: how full it keeps its ring.
   * A host-side hint (framesInGuest), never guest-visible, so not saved.
   */
  private rxPostedMax = 0;
  private readonly hdr = new Uint8Array(NET_HDR_BYTES);
  private chart: DeviceChart<typeof virtioNetMachine>;
  private inspector: { inspect?: ChartInspect; id: string } = { id: 'virtio-net' };

  constructor(
    private readonly host: NetHost,
    readonly mac: readonly number[] = DEFAULT_MAC,
    opts: { inspect?: ChartInspect } = {},
  ) {
    if (mac.length !== 6 || mac.some((b) => !Number.isInteger(b) || b < 0 || b > 255)) throw new RangeError('a MAC is 6 bytes');
    // num_buffers = 1: every frame fits one buffer (no mergeable buffers negotiated).
    this.hdr[10] = 1;
    if (opts.inspect) this.inspector.inspect = opts.inspect;
    this.chart = this.startChart({ rx: 'starved', link: 'down' });
  }

  /** Report the chart to `inspect` from now on, as actor `id` (restarted in its current state). */
  inspectWith(inspect: ChartInspect, id = this.inspector.id): void {
    this.inspector = { inspect, id };
    const value = this.state;
    this.chart.stop();
    this.chart = this.startChart(value);
  }

  /** The virtio-net chart's actor (for inspection and tests). */
  get chartActor(): DeviceChart<typeof virtioNetMachine> {
    return this.chart;
  }

  private get state(): { rx: string; link: string } {
    return this.chart.getSnapshot().value as never;
  }

  /** Start the chart in `value`: at construction, or from a snapshot (no entry effects rerun). */
  private startChart(value: { rx: string; link: string }): DeviceChart<typeof virtioNetMachine> {
    const machine = virtioNetMachine.provide({ actions: { connectBackend: () => this.host.connect() } });
    const snapshot = machine.resolveState({ value, context: {} });
    const { inspect, id } = this.inspector;
    return new DeviceChart(machine, snapshot, inspect ? { inspect, id } : undefined);
  }

  /** The host connected the network backend (boot on a primary, go-live on a backup). */
  linkUp(): void {
    if (this.state.link === 'down') this.chart.send({ type: 'net.linkUp' });
  }

  /** The backend is connected: released frames go out to it (the chart's `link.up`). */
  get isLinkUp(): boolean {
    return this.state.link === 'up';
  }

  attach(t: VirtioMmio): void {
    this.t = t;
  }

  configRead(offset: number, size: 1 | 2 | 4): number {
    // struct virtio_net_config: mac[6] at 0, then status (not offered: reads 0).
    let v = 0;
    for (let i = size - 1; i >= 0; i--) v = (v << 8) | (offset + i < 6 ? this.mac[offset + i]! : 0);
    return v >>> 0;
  }

  notify(q: number): void {
    if (q === RX) {
      // Buffers posted while starved: frames may be delivered again (VIRTIO 1.1 §2.6.13: a
      // driver notifies after making buffers available, so a notify is where to look).
      if (this.state.rx === 'starved' && this.t.availableCount(RX, false) > 0) this.chart.send({ type: 'net.buffersPosted' });
      return;
    }
    if (q !== TX) return;
    for (let c = this.t.pop(TX); c; c = this.t.pop(TX)) {
      const len = c.readBytes - NET_HDR_BYTES;
      if (len < ETH_MIN_FRAME || len > ETH_MAX_FRAME) {
        // A malformed frame is dropped, its buffer returned: the guest is not punished further.
        this.txDropped++;
      } else {
        this.txFrames++;
        this.host.output({ kind: 'net', icount: this.host.icount(), frame: this.t.gather(c.read, NET_HDR_BYTES, len) });
      }
      this.t.push(TX, c.head, 0);
    }
  }

  /**
   * A frame may be delivered now: the chart says the guest has posted buffers (`rx.ready`),
   * and the ring, peeked, agrees (a driver may take its queue away). Pure: a peek never
   * changes device state.
   */
  canReceive(): boolean {
    return this.state.rx === 'ready' && this.t.availableCount(RX, false) > 0;
  }

  /**
   * Frames delivered that the guest has not yet given back as receive buffers: its refill
   * level less what it has posted now. A driver re-posts a buffer once it has read the frame
   * in it (ftvm's guests, Linux's virtio-net in small batches), so this is about how many
   * frames it still has to read; a driver that refills late only makes it larger.
   */
  get framesInGuest(): number {
    const posted = this.t.availableCount(RX, false);
    if (posted > this.rxPostedMax) this.rxPostedMax = posted;
    return this.rxPostedMax - posted;
  }

  /**
   * Put `frame` in the next RX buffer (header, then the frame, truncated to the buffer) and
   * interrupt. False when no buffer was posted.
   */
  receive(frame: Uint8Array): boolean {
    // Before the pop: the refill level is what was posted before this frame took a buffer.
    const posted = this.t.availableCount(RX, false);
    if (posted > this.rxPostedMax) this.rxPostedMax = posted;
    const c = this.t.pop(RX);
    if (!c) return false;
    let n = this.t.scatter(c.write, 0, this.hdr);
    n += this.t.scatter(c.write, NET_HDR_BYTES, frame);
    this.rxFrames++;
    this.t.push(RX, c.head, n);
    if (this.state.rx === 'ready' && this.t.availableCount(RX, false) === 0) this.chart.send({ type: 'net.buffersUsedUp' });
    return true;
  }

  get counters(): { txFrames: number; txDropped: number; rxFrames: number } {
    return { txFrames: this.txFrames, txDropped: this.txDropped, rxFrames: this.rxFrames };
  }

  reset(): void {
    // A driver starting over may keep its ring less full than before.
    this.rxPostedMax = 0;
    if (this.state.rx === 'ready') this.chart.send({ type: 'net.reset' });
  }

  save(): VirtioNetState {
    return { mac: [...this.mac], ...this.counters, rxReady: this.state.rx === 'ready' };
  }

  load(state: unknown): void {
    const s = state as VirtioNetState;
    this.txFrames = s.txFrames;
    this.txDropped = s.txDropped;
    this.rxFrames = s.rxFrames;
    // The rx region as saved (an older snapshot: as the ring shows); the link is this host's.
    const rxReady = s.rxReady ?? this.t.availableCount(RX, false) > 0;
    const link = this.state.link;
    this.chart.stop();
    this.chart = this.startChart({ rx: rxReady ? 'ready' : 'starved', link });
  }
}
