import type { Output } from '../runtime/types.js';
import type { VirtioDevice, VirtioMmio } from './virtio-mmio.js';

// virtio-net (VIRTIO 1.1 §5.1): receive queue 0, transmit queue 1, a fixed MAC, the 12-byte
// virtio_net_hdr of VERSION_1 (num_buffers included), no offloads, no control queue.
// Transmission is deterministic and synchronous: the frame is copied out at the notify, leaves
// as an output, and the buffer goes back at once. Reception is an input: the env hands a frame
// over between instructions (logged as `net-rx`), only when the guest has a buffer posted.

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
}

export interface VirtioNetState {
  mac: number[];
  txFrames: number;
  txDropped: number;
  rxFrames: number;
}

export class VirtioNet implements VirtioDevice {
  readonly deviceId = VIRTIO_ID_NET;
  readonly queueCount = 2;
  readonly features: readonly [number, number] = [VIRTIO_NET_F_MAC, 0];
  private t!: VirtioMmio;
  private txFrames = 0;
  private txDropped = 0;
  private rxFrames = 0;
  private readonly hdr = new Uint8Array(NET_HDR_BYTES);

  constructor(
    private readonly host: NetHost,
    readonly mac: readonly number[] = DEFAULT_MAC,
  ) {
    if (mac.length !== 6 || mac.some((b) => !Number.isInteger(b) || b < 0 || b > 255)) throw new RangeError('a MAC is 6 bytes');
    // num_buffers = 1: every frame fits one buffer (no mergeable buffers negotiated).
    this.hdr[10] = 1;
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
    // RX buffers posted need no work now: the env looks for room before each delivery.
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

  /** The guest has an RX buffer posted. Pure: a peek never changes device state. */
  canReceive(): boolean {
    return this.t.availableCount(RX, false) > 0;
  }

  /**
   * Put `frame` in the next RX buffer (header, then the frame, truncated to the buffer) and
   * interrupt. False when no buffer was posted.
   */
  receive(frame: Uint8Array): boolean {
    const c = this.t.pop(RX);
    if (!c) return false;
    let n = this.t.scatter(c.write, 0, this.hdr);
    n += this.t.scatter(c.write, NET_HDR_BYTES, frame);
    this.rxFrames++;
    this.t.push(RX, c.head, n);
    return true;
  }

  get counters(): { txFrames: number; txDropped: number; rxFrames: number } {
    return { txFrames: this.txFrames, txDropped: this.txDropped, rxFrames: this.rxFrames };
  }

  reset(): void {}

  save(): VirtioNetState {
    return { mac: [...this.mac], ...this.counters };
  }

  load(state: unknown): void {
    const s = state as VirtioNetState;
    this.txFrames = s.txFrames;
    this.txDropped = s.txDropped;
    this.rxFrames = s.rxFrames;
  }
}
