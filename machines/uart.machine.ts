// UART 16550 lifecycle (DESIGN §1). Receive and transmit are independent, so they are
// parallel regions. Register behaviour (LSR, IER, the interrupt line) lives in
// devices/uart16550.ts; this chart tracks what FT cares about: console input is a logged
// input (DESIGN §2) and console output is an output held under the output rule (§3).
import { setup } from 'xstate';

export type UartEvent =
  /** A console byte was delivered into the RX FIFO (logged on the primary, replayed on the backup). */
  | { type: 'uart.received' }
  /** The guest read RBR; `remaining` bytes are left in the RX FIFO. */
  | { type: 'uart.read'; remaining: number }
  /** The guest wrote THR: the byte is an output, held until the backup has acked its icount. */
  | { type: 'uart.wrote' }
  /** Held bytes were released to the console; `remaining` are still held. */
  | { type: 'uart.released'; remaining: number };

const unwired = (name: string) => () => {
  throw new Error(`${name}: not provided`);
};

export const uartMachine = setup({
  types: { context: {} as Record<string, never>, events: {} as UartEvent },
  actions: {
    /** Write the released bytes to the host console. */
    emitOutput: unwired('emitOutput'),
  },
  guards: {
    isRxDrained: ({ event }) => event.type === 'uart.read' && event.remaining === 0,
    isTxDrained: ({ event }) => event.type === 'uart.released' && event.remaining === 0,
  },
}).createMachine({
  id: 'uart',
  type: 'parallel',
  context: {},
  states: {
    rx: {
      initial: 'empty',
      states: {
        empty: { on: { 'uart.received': { target: 'dataReady' } } },
        dataReady: {
          on: { 'uart.read': { guard: 'isRxDrained', target: 'empty' } },
        },
      },
    },
    tx: {
      initial: 'idle',
      states: {
        idle: { on: { 'uart.wrote': { target: 'holding' } } },
        // The guest keeps running while its bytes wait (DESIGN §3: only the output waits).
        holding: {
          on: {
            'uart.released': [
              { guard: 'isTxDrained', target: 'idle', actions: 'emitOutput' },
              { actions: 'emitOutput' },
            ],
          },
        },
      },
    },
  },
});
