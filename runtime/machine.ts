import { Bus } from './bus.js';
import { Hart, MIP_MEIP, MIP_MSIP, MIP_MTIP } from './cpu/hart.js';
import { Clint } from '../devices/clint.js';
import { Plic } from '../devices/plic.js';
import { Uart16550 } from '../devices/uart16550.js';
import { SifiveTest } from '../devices/sifive-test.js';
import { GoldfishRtc } from '../devices/goldfish-rtc.js';
import { VirtioEmptySlot } from '../devices/virtio-empty-slot.js';
import { checkFitsRam, parseElf, type ElfImage } from './elf.js';
import { digestMachine, restoreMachine, snapshotMachine, type MachineSnapshot } from './snapshot.js';
import type { Env } from './env/env.js';
import { MachineIo, type DiskOptions, type NetOptions } from './io/machine-io.js';
import type { PendingRequest } from '../devices/virtio-blk.js';
import { VirtioMmio } from '../devices/virtio-mmio.js';
import { Exit, type ChartInspect, type IrqLine, type MmioDevice, type Output } from './types.js';
import {
  CLINT_BASE, CLINT_SIZE, DEFAULT_MEMORY_MIB, PLIC_BASE, PLIC_SIZE, RAM_BASE, RTC_BASE, RTC_SIZE,
  TEST_BASE, TEST_SIZE, UART_BASE, UART_IRQ, UART_SIZE, VIRTIO_BASE, VIRTIO_SLOTS, VIRTIO_STRIDE, virtioIrq,
} from './platform.js';

/** Builds the device behind one virtio-mmio slot, given its PLIC line and the machine (RAM for DMA). */
export type VirtioFactory = (irq: IrqLine, m: Machine) => MmioDevice;

export interface MachineOptions {
  /** RAM size in MiB (default 16, as on `virt` guests built for ftvm). */
  memoryMiB?: number;
  env: Env;
  /** Every externally visible effect, tagged with its icount (DESIGN §3 output rule). */
  onOutput?: (o: Output) => void;
  /**
   * virtio-mmio devices, placed from the highest slot down as QEMU places `-device
   * virtio-*-device` arguments in order: the first goes to slot 7 (0x10008000, IRQ 8).
   */
  virtio?: VirtioFactory[];
  /** A virtio-blk disk in slot 7 (before any `virtio` devices), as guests/qemu-io.sh attaches one. */
  disk?: DiskOptions;
  /** A virtio-net NIC in the next slot down. */
  net?: NetOptions;
}

/**
 * The `virt`-shaped machine: bus, one hart, and the devices at their platform addresses
 * (TinyEMU's riscv_machine_init). It runs in batches whose budget never crosses the env's
 * next input, so every asynchronous input lands at an exact icount (DESIGN §2).
 */
export class Machine {
  readonly memoryMiB: number;
  readonly bus: Bus;
  readonly hart: Hart;
  readonly clint: Clint;
  readonly plic: Plic;
  readonly uart: Uart16550;
  readonly test: SifiveTest;
  readonly rtc: GoldfishRtc;
  /** The eight virtio-mmio slots by slot number; empty ones answer with device ID 0. */
  readonly virtio: MmioDevice[] = [];
  /** The hub between the virtio disk/NIC and the host's backends; undefined without either. */
  readonly io: MachineIo | undefined;
  /** Swapped at a batch boundary when a backup goes live. */
  env: Env;
  onOutput: (o: Output) => void;

  constructor(opts: MachineOptions) {
    const mib = opts.memoryMiB ?? DEFAULT_MEMORY_MIB;
    if (!Number.isInteger(mib) || mib < 1 || mib > 2048) throw new RangeError(`memory must be 1..2048 MiB, got ${mib}`);
    this.memoryMiB = mib;
    this.env = opts.env;
    this.onOutput = opts.onOutput ?? (() => {});
    this.bus = new Bus(RAM_BASE, mib * 1024 * 1024);
    this.hart = new Hart(this.bus, { value: (kind, icount) => this.env.value(kind, icount) });
    const hart = this.hart;

    this.clint = new Clint({
      msip: { set: (l) => hart.setPending(MIP_MSIP, l) },
      mtip: { set: (l) => hart.setPending(MIP_MTIP, l) },
      mtime: () => this.env.value('mtime', hart.icount),
      requestExit: () => hart.requestExit(),
    });
    this.plic = new Plic({ set: (l) => hart.setPending(MIP_MEIP, l) });
    this.uart = new Uart16550(this.plic.line(UART_IRQ), (byte) => this.onOutput({ kind: 'console', icount: hart.icount, byte }));
    this.test = new SifiveTest((code) => {
      this.onOutput({ kind: 'power', icount: hart.icount, code });
      hart.halt(code);
    });
    this.rtc = new GoldfishRtc(() => this.env.value('rtc', hart.icount));

    this.bus.map(CLINT_BASE, CLINT_SIZE, this.clint);
    this.bus.map(PLIC_BASE, PLIC_SIZE, this.plic);
    this.bus.map(UART_BASE, UART_SIZE, this.uart);
    this.bus.map(TEST_BASE, TEST_SIZE, this.test);
    this.bus.map(RTC_BASE, RTC_SIZE, this.rtc);

    this.io = opts.disk || opts.net ? new MachineIo(opts.disk, opts.net) : undefined;
    const factories = [...(this.io?.factories(this) ?? []), ...(opts.virtio ?? [])];
    if (factories.length > VIRTIO_SLOTS) throw new RangeError(`at most ${VIRTIO_SLOTS} virtio devices, got ${factories.length}`);
    for (let slot = 0; slot < VIRTIO_SLOTS; slot++) {
      const factory = factories[VIRTIO_SLOTS - 1 - slot];
      const dev = factory ? factory(this.plic.line(virtioIrq(slot)), this) : new VirtioEmptySlot();
      this.virtio.push(dev);
      this.bus.map(VIRTIO_BASE + slot * VIRTIO_STRIDE, VIRTIO_STRIDE, dev);
    }
  }

  get icount(): number {
    return this.hart.icount;
  }

  /** Load an executable into RAM and point the hart at its entry. Throws ElfError. */
  loadElf(image: Uint8Array): ElfImage {
    const elf = parseElf(image);
    checkFitsRam(elf, this.bus.ramBase, this.bus.ramBytes);
    for (const s of elf.segments) {
      this.bus.writeRam(s.addr, s.data);
      if (s.memBytes > s.data.length) this.bus.writeRam(s.addr + s.data.length, new Uint8Array(s.memBytes - s.data.length));
    }
    this.hart.reset(elf.entry);
    return elf;
  }

  /**
   * Deliver due inputs, then run at most `maxBudget` instructions without crossing the env's
   * next input. A zero budget (the env's horizon is now) returns Exit.Budget without running.
   * `softMax`: `maxBudget` is a slice, not a count; where it is the limit, the batch may end a
   * little short of it, at a translated block's boundary (Hart.run's `soft`). The env's next
   * input is always reached exactly.
   */
  step(maxBudget: number, softMax = false): Exit {
    this.env.deliverDue(this);
    const icount = this.hart.icount;
    const room = this.env.nextAt(icount) - icount;
    const budget = Math.min(maxBudget, room);
    if (!(budget > 0)) return Exit.Budget;
    return this.hart.run(budget, softMax && maxBudget < room);
  }

  /** Disk requests the guest issued that have no completion yet: go-live re-issues them (DESIGN §3). */
  pendingIo(): PendingRequest[] {
    return this.io?.pending() ?? [];
  }

  snapshot(): MachineSnapshot {
    return snapshotMachine(this);
  }

  /** Replace this machine's whole state (same memory size) by a snapshot's. */
  restore(snap: MachineSnapshot): void {
    restoreMachine(this, snap);
  }

  /** A machine shaped like the snapshot's (memory size); `opts.virtio` must match the original's devices. */
  static restore(snap: MachineSnapshot, opts: Omit<MachineOptions, 'memoryMiB'>): Machine {
    const m = new Machine({ ...opts, memoryMiB: snap.memoryMiB });
    m.restore(snap);
    return m;
  }

  /**
   * Report every device chart (timer, UART, PLIC gateways, virtio transports) to `inspect`
   * (`--inspect`, the dashboard), as actors `<prefix>timer`, `<prefix>uart`, `<prefix>plic-N`,
   * the transports as `<prefix>virtio-<slot>`, and the devices behind them as
   * `<prefix>virtio-blk-<slot>`/`virtio-net-<slot>`.
   */
  inspectCharts(inspect: ChartInspect, prefix = ''): void {
    this.clint.inspectWith(inspect, `${prefix}timer`);
    this.uart.inspectWith(inspect, `${prefix}uart`);
    this.plic.inspectWith(inspect, `${prefix}plic`);
    this.virtio.forEach((dev, slot) => {
      if (dev instanceof VirtioMmio) {
        const kind = dev.device.deviceId === 1 ? 'virtio-net' : dev.device.deviceId === 2 ? 'virtio-blk' : 'virtio-dev';
        dev.inspectWith(inspect, `${prefix}virtio-${slot}`);
        dev.device.inspectWith?.(inspect, `${prefix}${kind}-${slot}`);
      }
    });
  }

  /** Hex digest of architectural state (RAM, hart, devices), for divergence checks (DESIGN §3). */
  digest(): string {
    return digestMachine(this);
  }
}
