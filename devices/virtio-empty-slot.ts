import type { MmioDevice } from '../runtime/types.js';

const MAGIC_VALUE = 0x000;
const VERSION = 0x004;
const DEVICE_ID = 0x008;
const VENDOR_ID = 0x00c;

const VIRTIO_MAGIC = 0x7472_6976; // "virt"
const QEMU_VENDOR = 0x554d_4551; // "QEMU"

/**
 * A virtio-mmio slot with nothing plugged in, as QEMU `virt` shows one: the magic, version 2
 * (modern transport) and device ID 0, which virtio 1.2 §4.2.2 says a driver must ignore.
 * Guests probe all eight slots, so each must answer rather than fault.
 */
export class VirtioEmptySlot implements MmioDevice {
  read(offset: number, _size: 1 | 2 | 4): number {
    switch (offset) {
      case MAGIC_VALUE: return VIRTIO_MAGIC;
      case VERSION: return 2;
      case DEVICE_ID: return 0;
      case VENDOR_ID: return QEMU_VENDOR;
      default: return 0;
    }
  }

  write(_offset: number, _size: 1 | 2 | 4, _value: number): void {}

  save(): Record<string, never> {
    return {};
  }

  load(_state: unknown): void {}
}
