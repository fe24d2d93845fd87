// The QEMU `virt` memory map (DESIGN §1). These addresses live here and nowhere else:
// devices see offsets, the CPU sees a bus.
export const RAM_BASE = 0x8000_0000;
export const DEFAULT_MEMORY_MIB = 16;
/** The largest RAM a Machine takes (runtime/machine.ts): RAM must end below 4 GiB, at 0x8000_0000 + 2 GiB. */
export const MAX_MEMORY_MIB = 2048;

export const CLINT_BASE = 0x0200_0000;
export const CLINT_SIZE = 0x1_0000;
export const PLIC_BASE = 0x0c00_0000;
export const PLIC_SIZE = 0x400_0000;
export const UART_BASE = 0x1000_0000;
export const UART_SIZE = 0x100;
export const TEST_BASE = 0x0010_0000; // sifive_test: power off / exit code
export const TEST_SIZE = 0x1000;
export const RTC_BASE = 0x0010_1000; // goldfish RTC
export const RTC_SIZE = 0x1000;
export const VIRTIO_BASE = 0x1000_1000;
export const VIRTIO_STRIDE = 0x1000;
export const VIRTIO_SLOTS = 8;

export const UART_IRQ = 10;
export const virtioIrq = (slot: number): number => 1 + slot;

/** mtime ticks at 10 MHz on `virt`. */
export const MTIME_HZ = 10_000_000;
