// NS16550A interrupt control (DESIGN §1), the chart devices/uart16550.ts runs. The device
// keeps the FIFO bytes and the plain registers (LCR, MCR, SCR, divisor); this chart decides
// the interrupt conditions and the line: receive-ready, THR-empty (THRE) interrupt pending,
// overrun, and which of them IER enables. The device answers IER, IIR and LSR's DR/OE bits
// from this state, and sends an event only when a condition changes (a LSR poll or a THR
// write to an already-empty holding register sends none).
import { and, assign, not, or, setup, stateIn } from 'xstate';

/** IER bits (16550 datasheet): received data available, THR empty, receiver line status. */
export const IER_ERBFI = 0x01;
export const IER_ETBEI = 0x02;
export const IER_ELSI = 0x04;

export interface UartContext {
  /** The Interrupt Enable Register, low four bits. */
  ier: number;
}

export type UartEvent =
  /** A console byte entered an empty RX FIFO (logged on the primary, replayed on the backup). */
  | { type: 'uart.received' }
  /** The RX FIFO became empty: the guest read its last byte, or FCR cleared it. */
  | { type: 'uart.rxDrained' }
  /** A byte arrived with the RX FIFO full: it is lost and LSR.OE is set. */
  | { type: 'uart.overran' }
  /** The guest read LSR, which clears OE. */
  | { type: 'uart.lsrRead' }
  /** The guest wrote THR; the byte left at once, so the holding register is empty again. */
  | { type: 'uart.thrEmptied' }
  /** The guest read IIR while it identified THRE, which acknowledges it (datasheet, IIR). */
  | { type: 'uart.thrAcknowledged' }
  /** The guest wrote IER. */
  | { type: 'uart.ierWritten'; ier: number };

const unwired = (name: string) => () => {
  throw new Error(`${name}: not provided`);
};

const enabled = (bit: number) => ({ context }: { context: UartContext }) => (context.ier & bit) !== 0;

export const uartMachine = setup({
  types: { context: {} as UartContext, events: {} as UartEvent },
  actions: {
    /** Raise the UART's interrupt line (to its PLIC source). */
    /** Keep the written IER. */
    storeIer: assign({ ier: ({ event }) => (event.type === 'uart.ierWritten' ? event.ier & 0x0f : 0) }),
    raiseIrq: unwired('raiseIrq'),
    /** Lower the UART's interrupt line. */
    lowerIrq: unwired('lowerIrq'),
  },
  guards: {
    isRdaEnabled: enabled(IER_ERBFI),
    isThreEnabled: enabled(IER_ETBEI),
    isRlsEnabled: enabled(IER_ELSI),
    // Enabling ETBEI while THR is empty raises THRE at once, as QEMU's serial does.
    isEtbeiRising: ({ context, event }) =>
      event.type === 'uart.ierWritten' && !(context.ier & IER_ETBEI) && (event.ier & IER_ETBEI) !== 0,
    /** Some enabled condition holds: overrun (ELSI), data ready (ERBFI), THRE pending (ETBEI). */
    isInterrupting: or([
      and(['isRlsEnabled', stateIn('#uart.lsr.overrun')]),
      and(['isRdaEnabled', stateIn('#uart.rx.dataReady')]),
      and(['isThreEnabled', stateIn('#uart.thre.pending')]),
    ]),
    /** IIR names THRE: it is enabled and no higher-priority condition (RLS, RDA) is. */
    isThreIdentified: and([
      'isThreEnabled',
      not(and(['isRlsEnabled', stateIn('#uart.lsr.overrun')])),
      not(and(['isRdaEnabled', stateIn('#uart.rx.dataReady')])),
    ]),
  },
}).createMachine({
  id: 'uart',
  type: 'parallel',
  context: { ier: 0 },
  states: {
    rx: {
      initial: 'empty',
      states: {
        empty: { on: { 'uart.received': { target: 'dataReady' } } },
        dataReady: { on: { 'uart.rxDrained': { target: 'empty' } } },
      },
    },
    // NOTE IER is stored by this region's transitions: a handler on the root would be
    // preempted by the region's own (xstate resolves the conflict for the descendant).
    thre: {
      initial: 'quiet',
      states: {
        quiet: {
          on: {
            'uart.thrEmptied': { target: 'pending' },
            'uart.ierWritten': [
              { guard: 'isEtbeiRising', target: 'pending', actions: 'storeIer' },
              { actions: 'storeIer' },
            ],
          },
        },
        pending: {
          on: {
            'uart.thrAcknowledged': { guard: 'isThreIdentified', target: 'quiet' },
            'uart.ierWritten': { actions: 'storeIer' },
          },
        },
      },
    },
    lsr: {
      initial: 'clear',
      states: {
        clear: { on: { 'uart.overran': { target: 'overrun' } } },
        overrun: { on: { 'uart.lsrRead': { target: 'clear' } } },
      },
    },
    // The line is the OR of the enabled conditions (16550: INTR), re-decided after every event.
    irq: {
      initial: 'low',
      states: {
        low: { always: { guard: 'isInterrupting', target: 'high' } },
        high: {
          entry: 'raiseIrq',
          exit: 'lowerIrq',
          always: { guard: not('isInterrupting'), target: 'low' },
        },
      },
    },
  },
});
