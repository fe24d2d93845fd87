// The heartbeat link over real UDP on loopback (runtime/channel/heartbeat.ts): two links, a
// primary's and a backup's, hear each other once a session key is set; garbage, a beat of
// another session, a wrong role and a replayed beat each get a line and count for nothing.
import { createSocket, type Socket } from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { HeartbeatLink } from '../runtime/channel/heartbeat.js';
import { BEAT_BYTES, decodeBeat, encodeBeat, sessionTag } from '../runtime/channel/heartbeat-wire.js';

const keyed = (byte: number) => ({ exportKey: (_label: string, bytes: number) => Buffer.alloc(bytes, byte) });
const waitFor = async (what: () => boolean, ms = 5000): Promise<void> => {
  const t0 = Date.now();
  while (!what()) {
    if (Date.now() - t0 > ms) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
};

const open: Array<{ close(): void }> = [];
afterEach(() => {
  for (const x of open.splice(0)) x.close();
});

async function linkedPair(primaryKey: number, backupKey: number) {
  const lines: string[] = [];
  const primary = new HeartbeatLink({ role: 'primary', host: '127.0.0.1', port: 0, say: (l) => lines.push(`primary: ${l}`) });
  open.push(primary);
  const ready = await primary.ready;
  expect(ready).toBeDefined();
  const backup = new HeartbeatLink({ role: 'backup', host: '127.0.0.1', port: ready!.port, say: (l) => lines.push(`backup: ${l}`) });
  open.push(backup);
  await backup.ready;
  const p = primary.watch(keyed(primaryKey), Promise.resolve());
  const b = backup.watch(keyed(backupKey), Promise.resolve());
  return { primary, backup, p, b, lines, port: ready!.port };
}

describe('heartbeat wire', () => {
  it('a beat decodes only with its session key and role, and says why not otherwise', () => {
    const key = Buffer.alloc(32, 1);
    const beat = encodeBeat(key, sessionTag(key), 'backup', 7n);
    expect(beat.length).toBe(BEAT_BYTES);
    expect(decodeBeat(beat, key, sessionTag(key), 'backup')).toBe(7n);
    expect(decodeBeat(beat, key, sessionTag(key), 'primary')).toMatch(/does not come from a primary/);
    const other = Buffer.alloc(32, 2);
    expect(decodeBeat(beat, other, sessionTag(other), 'backup')).toMatch(/another channel session/);
    // The right tag, the wrong key (a forger who knows the tag): the MAC says no.
    expect(decodeBeat(beat, other, sessionTag(key), 'backup')).toMatch(/bad MAC/);
    const flipped = Buffer.from(beat);
    flipped[20]! ^= 1;
    expect(decodeBeat(flipped, key, sessionTag(key), 'backup')).toMatch(/bad MAC/);
    expect(decodeBeat(Buffer.from('hello'), key, sessionTag(key), 'backup')).toMatch(/not an ftvm heartbeat/);
    expect(decodeBeat(beat, undefined, undefined, 'backup')).toMatch(/no peer is attached/);
  });
});

describe('HeartbeatLink over UDP', () => {
  it('two links with the same session key hear each other within a few beats', async () => {
    const { primary, backup, p, b, lines } = await linkedPair(9, 9);
    await waitFor(() => p.sinceHeardMs() < 50 && b.sinceHeardMs() < 50);
    await new Promise((r) => setTimeout(r, 100));
    expect(p.sinceHeardMs()).toBeLessThan(100);
    expect(b.sinceHeardMs()).toBeLessThan(100);
    expect(primary.stats().heard).toBeGreaterThan(3);
    expect(backup.stats().heard).toBeGreaterThan(3);
    expect(lines).toEqual([]);
    // Closing one side: the other stops hearing it.
    backup.close();
    await new Promise((r) => setTimeout(r, 150));
    expect(p.sinceHeardMs()).toBeGreaterThan(100);
  });

  it('beats of another session are refused with a line and never heard', async () => {
    const { p, b, lines } = await linkedPair(1, 2);
    await waitFor(() => lines.length > 0);
    await new Promise((r) => setTimeout(r, 100));
    expect(p.sinceHeardMs()).toBe(Infinity);
    expect(b.sinceHeardMs()).toBe(Infinity);
    expect(lines[0]).toMatch(/^primary: 127\.0\.0\.1:\d+ sent a heartbeat of another channel session.*; ignored$/);
  });

  it('garbage, a wrong role and a replayed beat each get a line (at most one a second) and change nothing', async () => {
    const { primary, p, lines, port } = await linkedPair(5, 5);
    await waitFor(() => p.sinceHeardMs() < 50);
    const stray: Socket = createSocket('udp4');
    open.push(stray);
    await new Promise<void>((r) => stray.bind(0, '127.0.0.1', r));
    const send = (b: Uint8Array): Promise<void> => new Promise((r) => stray.send(b, port, '127.0.0.1', () => r()));
    const key = Buffer.alloc(32, 5);
    const heard = primary.stats().heard;
    await send(Buffer.from('GET / HTTP/1.0\r\n\r\n'));
    await waitFor(() => lines.length === 1);
    expect(lines[0]).toMatch(/sent not an ftvm heartbeat \(18 bytes\); ignored/);
    // Within the same second: counted, then reported in one line.
    await send(encodeBeat(key, sessionTag(key), 'primary', 1n));
    await send(encodeBeat(key, sessionTag(key), 'backup', 0n));
    await waitFor(() => lines.length === 2, 3000);
    expect(lines[1]).toMatch(/^primary: 2 more bad heartbeat datagrams in the last second; ignored$/);
    await new Promise((r) => setTimeout(r, 1000));
    // A replay of the first beat (seq 0) after the real ones: refused as such.
    await send(encodeBeat(key, sessionTag(key), 'backup', 0n));
    await waitFor(() => lines.length === 3);
    expect(lines[2]).toMatch(/a replayed heartbeat \(seq 0, last \d+\)/);
    // The real backup is still heard, and only its beats counted.
    expect(p.sinceHeardMs()).toBeLessThan(100);
    expect(primary.stats().heard).toBeGreaterThanOrEqual(heard);
  });

  it('a port already taken: the link says it is off, and reports no beats', async () => {
    const holder = createSocket('udp4');
    open.push(holder);
    await new Promise<void>((r) => holder.bind(0, '127.0.0.1', r));
    const lines: string[] = [];
    const link = new HeartbeatLink({ role: 'primary', host: '127.0.0.1', port: holder.address().port, say: (l) => lines.push(l) });
    open.push(link);
    expect(await link.ready).toBeUndefined();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^off \(.*EADDRINUSE.*\): failure detection watches the log channel only$/);
    expect(link.watch(keyed(1), Promise.resolve()).sinceHeardMs()).toBe(Infinity);
  });
});
