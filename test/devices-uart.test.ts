import { describe, expect, it } from 'vitest';
import { UART_FIFO_BYTES, Uart16550 } from '../devices/uart16550.js';

const RBR = 0, IER = 1, IIR = 2, FCR = 2, LCR = 3, LSR = 5, MSR = 6, SCR = 7;

function rig() {
  const out: number[] = [];
  let irq = false;
  const uart = new Uart16550({ set: (l) => { irq = l; } }, (b) => out.push(b));
  return { uart, out, irq: () => irq };
}

describe('UART 16550', () => {
  it('transmits THR bytes at once and always reports THRE|TEMT', () => {
    const { uart, out } = rig();
    for (const c of 'hi\n') uart.write(RBR, 1, c.charCodeAt(0));
    expect(String.fromCharCode(...out)).toBe('hi\n');
    expect(uart.read(LSR, 1) & 0x60).toBe(0x60);
  });

  it('receives into RBR with DR set and raises the line only when ERBFI is enabled', () => {
    const { uart, irq } = rig();
    uart.receive(0x41);
    expect(uart.read(LSR, 1) & 1).toBe(1);
    expect(irq()).toBe(false);
    uart.write(IER, 1, 1);
    expect(irq()).toBe(true);
    expect(uart.read(IIR, 1) & 0x0f).toBe(0x04);
    expect(uart.read(RBR, 1)).toBe(0x41);
    expect(irq()).toBe(false);
    expect(uart.read(LSR, 1) & 1).toBe(0);
    expect(uart.read(IIR, 1) & 0x0f).toBe(0x01);
  });

  it('holds one byte without FIFO and sixteen with it, in order', () => {
    const { uart } = rig();
    uart.receive(1);
    expect(uart.canReceive()).toBe(false);
    uart.read(RBR, 1);
    uart.write(FCR, 1, 0x07);
    expect(uart.read(IIR, 1) & 0xc0).toBe(0xc0);
    for (let i = 0; i < UART_FIFO_BYTES; i++) uart.receive(i + 10);
    expect(uart.canReceive()).toBe(false);
    const got = Array.from({ length: UART_FIFO_BYTES }, () => uart.read(RBR, 1));
    expect(got).toEqual(Array.from({ length: UART_FIFO_BYTES }, (_, i) => i + 10));
  });

  it('flags overrun in LSR (cleared by reading it) when a byte arrives to a full receiver', () => {
    const { uart } = rig();
    uart.receive(1);
    uart.receive(2);
    expect(uart.read(LSR, 1) & 0x02).toBe(0x02);
    expect(uart.read(LSR, 1) & 0x02).toBe(0);
    expect(uart.read(RBR, 1)).toBe(1);
  });

  it('raises THRE when ETBEI is enabled, clears it on IIR read, re-arms after a THR write', () => {
    const { uart, irq } = rig();
    uart.write(IER, 1, 2);
    expect(irq()).toBe(true);
    expect(uart.read(IIR, 1) & 0x0f).toBe(0x02);
    expect(irq()).toBe(false);
    uart.write(RBR, 1, 0x58);
    expect(irq()).toBe(true);
  });

  it('gives RX data priority over THRE in IIR', () => {
    const { uart } = rig();
    uart.write(IER, 1, 3);
    uart.receive(9);
    expect(uart.read(IIR, 1) & 0x0f).toBe(0x04);
  });

  it('maps the divisor latch over RBR/IER while DLAB is set', () => {
    const { uart, out } = rig();
    uart.write(LCR, 1, 0x83);
    uart.write(RBR, 1, 0x01);
    uart.write(IER, 1, 0x02);
    expect(out).toEqual([]);
    expect(uart.read(RBR, 1)).toBe(0x01);
    expect(uart.read(IER, 1)).toBe(0x02);
    uart.write(LCR, 1, 0x03);
    expect(uart.read(IER, 1)).toBe(0);
    expect(uart.read(LCR, 1)).toBe(0x03);
  });

  it('keeps the scratch register and reports idle modem lines', () => {
    const { uart } = rig();
    uart.write(SCR, 1, 0x5a);
    expect(uart.read(SCR, 1)).toBe(0x5a);
    expect(uart.read(MSR, 1)).toBe(0xb0);
  });

  it('round-trips FIFO contents and interrupt state through save/load', () => {
    const a = rig();
    a.uart.write(FCR, 1, 1);
    a.uart.write(IER, 1, 1);
    a.uart.receive(7);
    a.uart.receive(8);
    const b = rig();
    b.uart.load(JSON.parse(JSON.stringify(a.uart.save())));
    expect(b.irq()).toBe(true);
    expect([b.uart.read(RBR, 1), b.uart.read(RBR, 1)]).toEqual([7, 8]);
  });
});
