import { IER_ELSI, IER_ERBFI, IER_ETBEI, uartMachine } from '../machines/uart.machine.js';
import type { ChartInspect, IrqLine, MmioDevice } from '../runtime/types.js';
import { DeviceChart } from './chart.js';

// Register offsets (reg-shift 0 on QEMU `virt`).
const RBR_THR_DLL = 0;
const IER_DLM = 1;
const IIR_FCR = 2;
const LCR = 3;
const MCR = 4;
const LSR = 5;
const MSR = 6;
const SCR = 7;

const IIR_NONE = 0x01;
const IIR_RLS = 0x06;
const IIR_RDA = 0x04;
const IIR_THRE = 0x02;
const IIR_FIFO = 0xc0;

const LCR_DLAB = 0x80;

const LSR_DR = 0x01;
const LSR_OE = 0x02;
const LSR_THRE = 0x20;
const LSR_TEMT = 0x40;

/** DCD | DSR | CTS: what QEMU reports for a console with no modem lines. */
const MSR_IDLE = 0xb0;

export const UART_FIFO_BYTES = 16;

export interface Uart16550State {
  rx: number[];
  ier: number;
  lcr: number;
  mcr: number;
  scr: number;
  dll: number;
  dlm: number;
  fifoEnabled: boolean;
  thrIpending: boolean;
  overrun: boolean;
}

type UartActor = DeviceChart<typeof uartMachine>;

/**
 * NS16550A console. The UART chart (machines/uart.machine.ts) decides the interrupt
 * conditions and the line (receive-ready, THRE pending, overrun, IER); this class keeps the
 * FIFO bytes and plain registers, answers IER/IIR/LSR from the chart's state, and sends the
 * chart an event only when a condition changes. Transmission is instantaneous: THRE and TEMT are always set, and each THR
 * byte leaves through `transmit` at once (the machine tags it with the icount).
 * Received bytes enter only through `receive()`, which envs call between instructions.
 * NOTE simplifications: the RX interrupt fires whenever data is waiting, whatever the FCR
 * trigger level (so there is no character-timeout timer, which would be one more clock);
 * loopback (MCR bit 4) is not modelled.
 */
export class Uart16550 implements MmioDevice {
  private rx: number[] = [];
  private lcr = 0;
  private mcr = 0;
  private scr = 0;
  private dll = 0;
  private dlm = 0;
  private fifoEnabled = false;
  private chart: UartActor;
  private inspector: { inspect?: ChartInspect; id: string };

  constructor(
    private readonly irq: IrqLine,
    private readonly transmit: (byte: number) => void,
    opts: { inspect?: ChartInspect } = {},
  ) {
    this.inspector = { ...opts, id: 'uart' };
    this.chart = this.startChart({ rx: 'empty', thre: 'quiet', lsr: 'clear', irq: 'low' }, 0);
  }

  /** Report the chart to `inspect` from now on, as actor `id` (restarted in its current state). */
  inspectWith(inspect: ChartInspect, id = 'uart'): void {
    this.inspector = { inspect, id };
    const { state, ier } = this;
    this.chart.stop();
    this.chart = this.startChart(state, ier);
  }

  /** The UART chart's actor (for inspection and tests). */
  get chartActor(): UartActor {
    return this.chart;
  }

  /** Start the chart in `value`: at construction, or from a snapshot (no entry effects rerun). */
  private startChart(value: { rx: string; thre: string; lsr: string; irq: string }, ier: number): UartActor {
    const machine = uartMachine.provide({
      actions: { raiseIrq: () => this.irq.set(true), lowerIrq: () => this.irq.set(false) },
    });
    const snapshot = machine.resolveState({ value, context: { ier } });
    const { inspect, id } = this.inspector;
    return new DeviceChart(machine, snapshot, inspect ? { inspect, id } : undefined);
  }

  private get state(): { rx: string; thre: string; lsr: string; irq: string } {
    return this.chart.getSnapshot().value as never;
  }

  private get ier(): number {
    return this.chart.getSnapshot().context.ier;
  }

  /** Room in the receive FIFO: envs deliver a console byte only when this is true, so none is lost. */
  canReceive(): boolean {
    return this.rx.length < (this.fifoEnabled ? UART_FIFO_BYTES : 1);
  }

  /** A byte arrives from the console. Call only between instructions (env delivery). */
  receive(byte: number): void {
    if (this.canReceive()) {
      this.rx.push(byte & 0xff);
      if (this.rx.length === 1) this.chart.send({ type: 'uart.received' });
    } else if (this.state.lsr === 'clear') {
      this.chart.send({ type: 'uart.overran' });
    }
  }

  /** IIR's interrupt identification, highest priority first, from the chart's conditions. */
  private interruptId(): number {
    const s = this.state, ier = this.ier;
    if ((ier & IER_ELSI) && s.lsr === 'overrun') return IIR_RLS;
    if ((ier & IER_ERBFI) && s.rx === 'dataReady') return IIR_RDA;
    if ((ier & IER_ETBEI) && s.thre === 'pending') return IIR_THRE;
    return IIR_NONE;
  }

  /** Tell the chart when the RX FIFO has just become empty. */
  private rxChanged(): void {
    if (this.rx.length === 0 && this.state.rx === 'dataReady') this.chart.send({ type: 'uart.rxDrained' });
  }

  read(offset: number, _size: 1 | 2 | 4): number {
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (offset) {
      case RBR_THR_DLL: {
        if (dlab) return this.dll;
        const byte = this.rx.shift() ?? 0;
        this.rxChanged();
        return byte;
      }
      case IER_DLM: return dlab ? this.dlm : this.ier;
      case IIR_FCR: {
        const id = this.interruptId();
        // Reading IIR acknowledges a THRE interrupt (16550 datasheet, "Interrupt Identification").
        if (id === IIR_THRE) this.chart.send({ type: 'uart.thrAcknowledged' });
        return id | (this.fifoEnabled ? IIR_FIFO : 0);
      }
      case LCR: return this.lcr;
      case MCR: return this.mcr;
      case LSR: {
        const s = this.state;
        const overrun = s.lsr === 'overrun';
        const lsr = LSR_THRE | LSR_TEMT | (s.rx === 'dataReady' ? LSR_DR : 0) | (overrun ? LSR_OE : 0);
        if (overrun) this.chart.send({ type: 'uart.lsrRead' });
        return lsr;
      }
      case MSR: return MSR_IDLE;
      case SCR: return this.scr;
      default: return 0;
    }
  }

  write(offset: number, _size: 1 | 2 | 4, value: number): void {
    const v = value & 0xff;
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (offset) {
      case RBR_THR_DLL:
        if (dlab) { this.dll = v; return; }
        this.transmit(v);
        // The byte left at once, so the holding register is empty again.
        if (this.state.thre === 'quiet') this.chart.send({ type: 'uart.thrEmptied' });
        return;
      case IER_DLM:
        if (dlab) { this.dlm = v; return; }
        if ((v & 0x0f) !== this.ier) this.chart.send({ type: 'uart.ierWritten', ier: v & 0x0f }, `ier${v & 0x0f}`);
        return;
      case IIR_FCR:
      {
        const enable = (v & 0x01) !== 0;
        // Toggling FIFO mode or setting "clear RX" empties the receiver, as on the 16550.
        if ((v & 0x02) || enable !== this.fifoEnabled) this.rx = [];
        this.fifoEnabled = enable;
        this.rxChanged();
        return;
      }
      case LCR: this.lcr = v; return;
      case MCR: this.mcr = v & 0x1f; return;
      case SCR: this.scr = v; return;
      default: return;
    }
  }

  save(): Uart16550State {
    const s = this.state;
    return {
      rx: [...this.rx], ier: this.ier, lcr: this.lcr, mcr: this.mcr, scr: this.scr, dll: this.dll, dlm: this.dlm,
      fifoEnabled: this.fifoEnabled, thrIpending: s.thre === 'pending', overrun: s.lsr === 'overrun',
    };
  }

  load(state: unknown): void {
    const s = state as Uart16550State;
    this.rx = [...s.rx];
    this.lcr = s.lcr; this.mcr = s.mcr; this.scr = s.scr;
    this.dll = s.dll; this.dlm = s.dlm;
    this.fifoEnabled = s.fifoEnabled;
    // The chart restarts in the state the saved registers name (no entry effects rerun).
    const ier = s.ier & 0x0f;
    const up = ((ier & IER_ELSI) !== 0 && s.overrun) || ((ier & IER_ERBFI) !== 0 && s.rx.length > 0) ||
      ((ier & IER_ETBEI) !== 0 && s.thrIpending);
    this.chart.stop();
    this.chart = this.startChart({
      rx: s.rx.length > 0 ? 'dataReady' : 'empty',
      thre: s.thrIpending ? 'pending' : 'quiet',
      lsr: s.overrun ? 'overrun' : 'clear',
      irq: up ? 'high' : 'low',
    }, ier);
    this.irq.set(up);
  }
}
