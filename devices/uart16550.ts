import type { IrqLine, MmioDevice } from '../runtime/types.js';

// Register offsets (reg-shift 0 on QEMU `virt`).
const RBR_THR_DLL = 0;
const IER_DLM = 1;
const IIR_FCR = 2;
const LCR = 3;
const MCR = 4;
const LSR = 5;
const MSR = 6;
const SCR = 7;

const IER_ERBFI = 0x01; // received data available
const IER_ETBEI = 0x02; // THR empty
const IER_ELSI = 0x04; // receiver line status

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

/**
 * NS16550A console. Transmission is instantaneous: THRE and TEMT are always set, and each THR
 * byte leaves through `transmit` at once (the machine tags it with the icount).
 * Received bytes enter only through `receive()`, which envs call between instructions.
 * NOTE simplifications: the RX interrupt fires whenever data is waiting, whatever the FCR
 * trigger level (so there is no character-timeout timer, which would be one more clock);
 * loopback (MCR bit 4) is not modelled.
 */
export class Uart16550 implements MmioDevice {
  private rx: number[] = [];
  private ier = 0;
  private lcr = 0;
  private mcr = 0;
  private scr = 0;
  private dll = 0;
  private dlm = 0;
  private fifoEnabled = false;
  private thrIpending = false;
  private overrun = false;
  private irqUp = false;

  constructor(private readonly irq: IrqLine, private readonly transmit: (byte: number) => void) {}

  /** Room in the receive FIFO: envs deliver a console byte only when this is true, so none is lost. */
  canReceive(): boolean {
    return this.rx.length < (this.fifoEnabled ? UART_FIFO_BYTES : 1);
  }

  /** A byte arrives from the console. Call only between instructions (env delivery). */
  receive(byte: number): void {
    if (this.canReceive()) this.rx.push(byte & 0xff);
    else this.overrun = true;
    this.update();
  }

  private interruptId(): number {
    if ((this.ier & IER_ELSI) && this.overrun) return IIR_RLS;
    if ((this.ier & IER_ERBFI) && this.rx.length > 0) return IIR_RDA;
    if ((this.ier & IER_ETBEI) && this.thrIpending) return IIR_THRE;
    return IIR_NONE;
  }

  private update(): void {
    const up = this.interruptId() !== IIR_NONE;
    if (up !== this.irqUp) {
      this.irqUp = up;
      this.irq.set(up);
    }
  }

  read(offset: number, _size: 1 | 2 | 4): number {
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (offset) {
      case RBR_THR_DLL: {
        if (dlab) return this.dll;
        const byte = this.rx.shift() ?? 0;
        this.update();
        return byte;
      }
      case IER_DLM: return dlab ? this.dlm : this.ier;
      case IIR_FCR: {
        const id = this.interruptId();
        // Reading IIR acknowledges a THRE interrupt (16550 datasheet, "Interrupt Identification").
        if (id === IIR_THRE) {
          this.thrIpending = false;
          this.update();
        }
        return id | (this.fifoEnabled ? IIR_FIFO : 0);
      }
      case LCR: return this.lcr;
      case MCR: return this.mcr;
      case LSR: {
        const lsr = LSR_THRE | LSR_TEMT | (this.rx.length > 0 ? LSR_DR : 0) | (this.overrun ? LSR_OE : 0);
        if (this.overrun) {
          this.overrun = false;
          this.update();
        }
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
        this.thrIpending = true;
        break;
      case IER_DLM:
        if (dlab) { this.dlm = v; return; }
        // Enabling ETBEI while THR is empty raises THRE at once, as QEMU's serial does.
        if (!(this.ier & IER_ETBEI) && (v & IER_ETBEI)) this.thrIpending = true;
        this.ier = v & 0x0f;
        break;
      case IIR_FCR:
      {
        const enable = (v & 0x01) !== 0;
        // Toggling FIFO mode or setting "clear RX" empties the receiver, as on the 16550.
        if ((v & 0x02) || enable !== this.fifoEnabled) this.rx = [];
        this.fifoEnabled = enable;
        break;
      }
      case LCR: this.lcr = v; return;
      case MCR: this.mcr = v & 0x1f; return;
      case SCR: this.scr = v; return;
      default: return;
    }
    this.update();
  }

  save(): Uart16550State {
    return {
      rx: [...this.rx], ier: this.ier, lcr: this.lcr, mcr: this.mcr, scr: this.scr, dll: this.dll, dlm: this.dlm,
      fifoEnabled: this.fifoEnabled, thrIpending: this.thrIpending, overrun: this.overrun,
    };
  }

  load(state: unknown): void {
    const s = state as Uart16550State;
    this.rx = [...s.rx];
    this.ier = s.ier; this.lcr = s.lcr; this.mcr = s.mcr; this.scr = s.scr;
    this.dll = s.dll; this.dlm = s.dlm;
    this.fifoEnabled = s.fifoEnabled; this.thrIpending = s.thrIpending; this.overrun = s.overrun;
    this.irqUp = this.interruptId() !== IIR_NONE;
    this.irq.set(this.irqUp);
  }
}
