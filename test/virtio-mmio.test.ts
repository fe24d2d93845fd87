// The virtio-mmio v2 transport and split virtqueues, driven from the guest side: registers
// written as a driver would, rings and descriptors laid out in guest RAM. Then fast-check
// plays a hostile guest (random registers, random descriptor tables): the host never throws,
// never touches memory outside RAM, and a bad chain sets DEVICE_NEEDS_RESET.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Machine } from '../runtime/machine.js';
import { DeterministicEnv } from '../runtime/env/deterministic.js';
import type { Output } from '../runtime/types.js';
import type { VirtioMmio } from '../devices/virtio-mmio.js';

const RAM = 0x8000_0000;
const DESC = RAM + 0x10_0000;
const AVAIL = RAM + 0x10_1000;
const USED = RAM + 0x10_2000;
const DATA = RAM + 0x11_0000;
const QSIZE = 8;
/** Small RAM keeps the fuzz's snapshots and digests cheap. */
const MIB = 4;
const RAM_END = RAM + (MIB << 20);

const R = {
  magic: 0x000, version: 0x004, deviceId: 0x008, features: 0x010, featuresSel: 0x014, driverFeatures: 0x020, driverFeaturesSel: 0x024,
  queueSel: 0x030, queueNumMax: 0x034, queueNum: 0x038, queueReady: 0x044, notify: 0x050, intStatus: 0x060, intAck: 0x064, status: 0x070,
  descLo: 0x080, descHi: 0x084, driverLo: 0x090, driverHi: 0x094, deviceLo: 0x0a0, deviceHi: 0x0a4, config: 0x100,
};

function machine() {
  const outputs: Output[] = [];
  const m = new Machine({ memoryMiB: MIB, env: new DeterministicEnv(), disk: { sectors: 64 }, net: {}, onOutput: (o) => outputs.push(o) });
  return { m, outputs, blk: m.virtio[7] as VirtioMmio, nic: m.virtio[6] as VirtioMmio };
}

const w32 = (m: Machine, addr: number, v: number) => m.bus.writeRam(addr, new Uint8Array(new Uint32Array([v]).buffer));
const w16 = (m: Machine, addr: number, v: number) => m.bus.writeRam(addr, new Uint8Array(new Uint16Array([v]).buffer));
const r16 = (m: Machine, addr: number) => new DataView(m.bus.readRam(addr, 2).buffer).getUint16(0, true);
const r32 = (m: Machine, addr: number) => new DataView(m.bus.readRam(addr, 4).buffer).getUint32(0, true);

/** VIRTIO 1.1 §3.1.1 driver initialisation, with one queue of QSIZE at DESC/AVAIL/USED. */
function bringUp(d: VirtioMmio, queue = 0, features: [number, number] = [0, 1]) {
  d.write(R.status, 4, 0);
  d.write(R.status, 4, 1);
  d.write(R.status, 4, 3);
  d.write(R.driverFeaturesSel, 4, 0);
  d.write(R.driverFeatures, 4, features[0]);
  d.write(R.driverFeaturesSel, 4, 1);
  d.write(R.driverFeatures, 4, features[1]);
  d.write(R.status, 4, 11);
  d.write(R.queueSel, 4, queue);
  d.write(R.queueNum, 4, QSIZE);
  d.write(R.descLo, 4, DESC);
  d.write(R.driverLo, 4, AVAIL);
  d.write(R.deviceLo, 4, USED);
  d.write(R.queueReady, 4, 1);
  d.write(R.status, 4, 15);
}

function desc(m: Machine, i: number, addr: number, len: number, flags: number, next: number) {
  const d = DESC + 16 * i;
  w32(m, d, addr);
  w32(m, d + 4, 0);
  w32(m, d + 8, len);
  w16(m, d + 12, flags);
  w16(m, d + 14, next);
}

function submit(m: Machine, d: VirtioMmio, head: number, queue = 0) {
  const idx = r16(m, AVAIL + 2);
  w16(m, AVAIL + 4 + 2 * (idx % QSIZE), head);
  w16(m, AVAIL + 2, (idx + 1) & 0xffff);
  d.write(R.notify, 4, queue);
}

/** A virtio-blk request: header at DATA, `len` data bytes at DATA+0x100, status at DATA+0x80. */
function blkRequest(m: Machine, type: number, sector: number, len: number, deviceWrites: boolean) {
  w32(m, DATA, type);
  w32(m, DATA + 4, 0);
  w32(m, DATA + 8, sector);
  w32(m, DATA + 12, 0);
  m.bus.writeRam(DATA + 0x80, Uint8Array.of(0xff));
  desc(m, 0, DATA, 16, 1, 1);
  if (len > 0) {
    desc(m, 1, DATA + 0x100, len, 1 | (deviceWrites ? 2 : 0), 2);
    desc(m, 2, DATA + 0x80, 1, 2, 0);
  } else {
    desc(m, 1, DATA + 0x80, 1, 2, 0);
  }
}

describe('virtio-mmio transport', () => {
  it('identifies disk and NIC as version 2 QEMU devices with VERSION_1', () => {
    const { blk, nic } = machine();
    expect(blk.read(R.magic, 4)).toBe(0x7472_6976);
    expect(blk.read(R.version, 4)).toBe(2);
    expect(blk.read(R.deviceId, 4)).toBe(2);
    expect(nic.read(R.deviceId, 4)).toBe(1);
    blk.write(R.featuresSel, 4, 1);
    expect(blk.read(R.features, 4) & 1).toBe(1);
    blk.write(R.featuresSel, 4, 0);
    expect(blk.read(R.features, 4)).toBe(1 << 9); // FLUSH
    nic.write(R.featuresSel, 4, 0);
    expect(nic.read(R.features, 4)).toBe(1 << 5); // MAC
    expect([0, 1, 2, 3, 4, 5].map((i) => nic.read(R.config + i, 1))).toEqual([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    expect(blk.read(R.config, 4)).toBe(64);
    expect(blk.read(R.config + 4, 4)).toBe(0);
    expect(blk.read(R.queueNumMax, 4)).toBe(256);
  });

  it('refuses FEATURES_OK to a legacy driver or one asking for unoffered features', () => {
    const { blk } = machine();
    bringUp(blk, 0, [0, 0]); // no VERSION_1
    expect(blk.read(R.status, 4) & 8).toBe(0);
    bringUp(blk, 0, [1 << 20, 1]);
    expect(blk.read(R.status, 4) & 8).toBe(0);
    bringUp(blk, 0, [1 << 9, 1]);
    expect(blk.read(R.status, 4) & 8).toBe(8);
  });

  it('serves a read only when its completion arrives, then returns the chain and interrupts', () => {
    const { m, blk } = machine();
    bringUp(blk);
    blkRequest(m, 0, 3, 1024, true);
    submit(m, blk, 0);
    // The device has seen it (deterministic) but nothing changed in guest memory yet.
    expect(m.pendingIo()).toEqual([{ tag: 1, kind: 'read', sector: 3, count: 2 }]);
    expect(r16(m, USED + 2)).toBe(0);
    expect(blk.read(R.intStatus, 4)).toBe(0);
    const data = new Uint8Array(1024).map((_, i) => i & 0xff);
    expect(m.io!.apply({ type: 'disk-read', tag: 1, data })).toBe(true);
    expect(m.io!.apply({ type: 'disk-done', tag: 1, status: 0 })).toBe(true);
    expect(m.bus.readRam(DATA + 0x100, 1024)).toEqual(data);
    expect(m.bus.readRam(DATA + 0x80, 1)[0]).toBe(0);
    expect(r16(m, USED + 2)).toBe(1);
    expect(r32(m, USED + 4)).toBe(0); // head
    expect(r32(m, USED + 8)).toBe(1025); // data + status
    expect(blk.read(R.intStatus, 4)).toBe(1);
    expect(m.plic.read(0x1000, 4) & (1 << 8)).toBe(1 << 8); // PLIC source 8 pending (slot 7)
    blk.write(R.intAck, 4, 1);
    expect(blk.read(R.intStatus, 4)).toBe(0);
    // A second completion for the same tag is refused (duplicate after go-live).
    expect(m.io!.apply({ type: 'disk-done', tag: 1, status: 0 })).toBe(false);
    expect(m.pendingIo()).toEqual([]);
  });

  it('turns writes and flushes into outputs, and completes GET_ID, bad ranges and unknown types at once', () => {
    const { m, blk, outputs } = machine();
    bringUp(blk);
    m.bus.writeRam(DATA + 0x100, new Uint8Array(512).fill(0xab));
    blkRequest(m, 1, 7, 512, false);
    submit(m, blk, 0);
    expect(outputs).toMatchObject([{ kind: 'disk-write', tag: 1, sector: 7 }]);
    expect((outputs[0] as { data: Uint8Array }).data).toEqual(new Uint8Array(512).fill(0xab));
    blkRequest(m, 4, 0, 0, false);
    submit(m, blk, 0);
    expect(outputs[1]).toMatchObject({ kind: 'disk-write', tag: 2, flush: true });
    expect(m.pendingIo().map((p) => p.kind)).toEqual(['write', 'flush']);
    blkRequest(m, 8, 0, 20, true);
    submit(m, blk, 0);
    expect(new TextDecoder().decode(m.bus.readRam(DATA + 0x100, 10))).toBe('ftvm-disk0');
    expect(m.bus.readRam(DATA + 0x80, 1)[0]).toBe(0);
    blkRequest(m, 0, 63, 1024, true); // 63+2 > 64 sectors
    submit(m, blk, 0);
    expect(m.bus.readRam(DATA + 0x80, 1)[0]).toBe(1);
    blkRequest(m, 255, 0, 0, false);
    submit(m, blk, 0);
    expect(m.bus.readRam(DATA + 0x80, 1)[0]).toBe(2);
    expect(r16(m, USED + 2)).toBe(3);
  });

  it('delivers a received frame into a posted RX buffer with a 12-byte header', () => {
    const { m, nic, outputs } = machine();
    bringUp(nic, 0, [1 << 5, 1]);
    expect(m.io!.net!.canReceive()).toBe(false);
    desc(m, 0, DATA, 1536, 2, 0);
    submit(m, nic, 0);
    expect(m.io!.net!.canReceive()).toBe(true);
    const frame = new Uint8Array(60).map((_, i) => i);
    expect(m.io!.apply({ type: 'net-rx', frame })).toBe(true);
    const got = m.bus.readRam(DATA, 72);
    expect(got[10]).toBe(1); // num_buffers
    expect(got.subarray(12)).toEqual(frame);
    expect(r32(m, USED + 8)).toBe(72);
    expect(m.io!.apply({ type: 'net-rx', frame })).toBe(false); // no buffer left
    // TX on queue 1: header + frame leaves as an output at once; a runt is dropped.
    nic.write(R.queueSel, 4, 1);
    nic.write(R.queueNum, 4, QSIZE);
    const T = 0x20_0000;
    nic.write(R.descLo, 4, DESC + T);
    nic.write(R.driverLo, 4, AVAIL + T);
    nic.write(R.deviceLo, 4, USED + T);
    nic.write(R.queueReady, 4, 1);
    m.bus.writeRam(DATA + 0x1000, new Uint8Array(12 + 42).fill(7));
    w32(m, DESC + T, DATA + 0x1000); w32(m, DESC + T + 8, 54); w16(m, DESC + T + 12, 0);
    w16(m, AVAIL + T + 4, 0); w16(m, AVAIL + T + 2, 1);
    nic.write(R.notify, 4, 1);
    expect(outputs).toHaveLength(1);
    expect(outputs[0]).toMatchObject({ kind: 'net' });
    expect((outputs[0] as { frame: Uint8Array }).frame).toEqual(new Uint8Array(42).fill(7));
    expect(r16(m, USED + T + 2)).toBe(1);
  });

  it('sets DEVICE_NEEDS_RESET on a looping chain, an address outside RAM, or a notify before ready', () => {
    const cases: Array<(m: Machine) => void> = [
      (m) => { desc(m, 0, DATA, 16, 1, 1); desc(m, 1, DATA, 1, 1 | 2, 0); },
      (m) => { desc(m, 0, 0x1000_0000, 16, 1, 1); desc(m, 1, DATA, 1, 2, 0); },
      (m) => { desc(m, 0, DATA, 16, 1, 1); desc(m, 1, RAM_END - 8, 16, 2, 0); },
      (m) => { desc(m, 0, DATA, 16, 1, 9); },
      (m) => { desc(m, 0, DATA, 16, 2, 1); desc(m, 1, DATA, 16, 0, 0); }, // readable after writable
    ];
    for (const lay of cases) {
      const { m, blk } = machine();
      bringUp(blk);
      lay(m);
      submit(m, blk, 0);
      expect(blk.read(R.status, 4) & 0x40).toBe(0x40);
      expect(blk.read(R.intStatus, 4) & 2).toBe(2);
      expect(m.pendingIo()).toEqual([]);
      // A reset makes it usable again.
      bringUp(blk);
      expect(blk.read(R.status, 4)).toBe(15);
    }
    const { blk } = machine();
    blk.write(R.status, 4, 15);
    blk.write(R.notify, 4, 0);
    expect(blk.read(R.status, 4) & 0x40).toBe(0x40);
  });

  it('survives a hostile guest: random registers and random descriptor tables (fast-check)', () => {
    const reg = fc.constantFrom(...Object.values(R), 0x0fc, 0x0ac, 0x104, 0xfff);
    const op = fc.oneof(
      fc.record({ t: fc.constant('reg' as const), off: reg, v: fc.oneof(fc.integer({ min: 0, max: 16 }), fc.constantFrom(DESC, AVAIL, USED, RAM - 16, 0xffff_ffff, RAM_END - 4), fc.nat()) }),
      fc.record({ t: fc.constant('ram' as const), at: fc.constantFrom(DESC, AVAIL, USED, DATA), bytes: fc.uint8Array({ maxLength: 256 }) }),
      fc.record({ t: fc.constant('desc' as const), i: fc.nat(15), addr: fc.oneof(fc.constantFrom(DATA, RAM, RAM_END - 1, 0, 0x1000_1000), fc.nat()), len: fc.oneof(fc.nat(4096), fc.nat()), flags: fc.nat(7), next: fc.nat(20) }),
      fc.record({ t: fc.constant('submit' as const), head: fc.nat(20), q: fc.nat(2) }),
      fc.record({ t: fc.constant('complete' as const), tag: fc.nat(6), ok: fc.boolean() }),
    );
    fc.assert(
      fc.property(fc.boolean(), fc.array(op, { maxLength: 60 }), (startUp, ops) => {
        const { m, blk, nic } = machine();
        const dev = startUp ? blk : nic;
        if (startUp) bringUp(blk);
        for (const o of ops) {
          switch (o.t) {
            case 'reg': dev.write(o.off, 4, o.v); dev.read(o.off, 4); break;
            case 'ram': m.bus.writeRam(o.at, o.bytes); break;
            case 'desc': desc(m, o.i, o.addr >>> 0, o.len >>> 0, o.flags, o.next); break;
            case 'submit': submit(m, dev, o.head, o.q); break;
            case 'complete':
              m.io!.apply({ type: 'disk-read', tag: o.tag, data: new Uint8Array(4096) });
              m.io!.apply({ type: 'disk-done', tag: o.tag, status: o.ok ? 0 : 1 });
              m.io!.apply({ type: 'net-rx', frame: new Uint8Array(64) });
              break;
          }
        }
        // Whatever happened, state is consistent and survives a snapshot round trip.
        // (The guest may have acknowledged the config interrupt since; the reason stays.)
        if (dev.read(R.status, 4) & 0x40) expect(dev.failure).not.toBe('');
        const copy = new Machine({ memoryMiB: MIB, env: new DeterministicEnv(), disk: { sectors: 64 }, net: {} });
        copy.restore(m.snapshot());
        expect(copy.digest()).toBe(m.digest());
      }),
      { numRuns: 120 },
    );
  });
});
