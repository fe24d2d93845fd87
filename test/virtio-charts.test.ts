// The virtio-blk and virtio-net charts run in a live Machine (issue 12): a recorded dns session
// shows them to an inspector as `virtio-blk-7` and `virtio-net-6` (beside their transports,
// `virtio-7` and `virtio-6`) with the backends attached, and its replay, inspected too, with
// none attached (the log answers) reaches the same digest, as does a replay on the memoized
// charts (no inspector).
import { Resolver } from 'node:dns/promises';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InspectionEvent } from 'xstate';
import { Machine } from '../runtime/machine.js';
import { RecordingEnv } from '../runtime/env/recording.js';
import { ReplayEnv } from '../runtime/env/replay.js';
import { runMachine } from '../runtime/runner.js';
import { FileDisk } from '../runtime/io/disk-file.js';
import { UdpNet } from '../runtime/io/net-udp.js';
import { startDashboard } from '../runtime/dashboard/server.js';
import { fanOut } from '../runtime/inspect/index.js';
import type { LogEntry, LogPayload } from '../runtime/log/entry.js';

const guests = new URL('../guests/', import.meta.url);
const dnsElf = readFileSync(new URL('dns/dns.elf', guests));

let dir: string;
beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'ftvm-vcharts-')); });
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** What an inspector learns: actors by id, their last state, the events each got. */
function viewer() {
  const last = new Map<string, unknown>();
  const events = new Map<string, string[]>();
  const inspect = (e: InspectionEvent): void => {
    const id = (e.actorRef as unknown as { id: string }).id;
    if (e.type === '@xstate.snapshot') last.set(id, (e.snapshot as unknown as { value: unknown }).value);
    if (e.type === '@xstate.event' && !e.event.type.startsWith('xstate.')) events.set(id, [...(events.get(id) ?? []), e.event.type]);
  };
  return { inspect, last, events };
}

describe('virtio-blk and virtio-net charts in a running machine', () => {
  it('a recorded dns session shows them live; its replays, inspected and memoized, show them on the log, to the same digest', async () => {
    const image = join(dir, 'zone.img');
    copyFileSync(new URL('dns/zone.img', guests), image);
    const disk = await FileDisk.open(image);
    const net = await UdpNet.open([{ hostAddr: '127.0.0.1', hostPort: 0, guestPort: 53 }]);
    const log: LogEntry[] = [];
    const sink = (p: LogPayload, icount: number) => log.push({ ...p, seq: log.length, icount } as LogEntry);
    let text = '';
    const live = viewer();
    const dashboard = await startDashboard();
    const m: Machine = new Machine({
      env: new RecordingEnv(sink), disk: { backend: disk }, net: { backend: net },
      onOutput: (o) => { if (o.kind === 'console') text += String.fromCharCode(o.byte); else m.io!.execute(o); },
    });
    m.inspectCharts(fanOut(live.inspect, dashboard.inspect) as never);
    m.loadElf(dnsElf);
    const abort = new AbortController();
    const done = runMachine(m, { signal: abort.signal });
    const deadline = Date.now() + 20_000;
    while (!/dns: serving \d+ records\n/.test(text)) {
      if (Date.now() > deadline) throw new Error(`dns did not come up: ${JSON.stringify(text)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    const resolver = new Resolver({ timeout: 1000, tries: 3 });
    resolver.setServers([`127.0.0.1:${net.boundPorts[0]}`]);
    expect((await resolver.resolve4('www.example.test')).sort()).toEqual(['192.0.2.80', '192.0.2.81']);
    abort.abort();
    await done;
    await m.io!.close();
    const final = { icount: m.icount, digest: m.digest() };
    sink({ type: 'digest', digest: final.digest }, final.icount);

    expect([...live.last.keys()]).toEqual(expect.arrayContaining(['virtio-7', 'virtio-6', 'virtio-blk-7', 'virtio-net-6']));
    expect(live.last.get('virtio-7')).toBe('ready');
    // The zone was read from the disk (each read submitted, then completed), all answered.
    expect(live.last.get('virtio-blk-7')).toEqual({ requests: 'idle', backend: 'attached' });
    const blk = live.events.get('virtio-blk-7') ?? [];
    expect(blk.filter((t) => t === 'blk.submitted').length).toBeGreaterThan(0);
    expect(blk.filter((t) => t === 'blk.completed').length).toBe(blk.filter((t) => t === 'blk.submitted').length);
    // The guest posted its receive buffers once; the query came in over a link that is up.
    expect(live.last.get('virtio-net-6')).toEqual({ rx: 'ready', link: 'up' });
    expect(live.events.get('virtio-net-6')).toEqual(['net.buffersPosted']);
    // The dashboard lights each device chart's card from the same actors.
    const state = (await (await fetch(`${dashboard.url}api/state`)).json()) as { view: { actors: { node: string; chart?: string; value: unknown }[] } };
    await dashboard.close();
    const card = (chart: string) => state.view.actors.filter((a) => a.chart === chart).map((a) => [a.node, a.value]);
    expect(card('virtio-blk')).toEqual([['virtio-blk-7', { requests: 'idle', backend: 'attached' }]]);
    expect(card('virtio-net')).toEqual([['virtio-net-6', { rx: 'ready', link: 'up' }]]);
    expect(card('virtio').sort()).toEqual([['virtio-6', 'ready'], ['virtio-7', 'ready']]);

    const replayed = viewer();
    const env = new ReplayEnv({ digest: (mm) => mm.digest() });
    for (const e of log) env.push(e);
    const r = new Machine({ env, disk: { sectors: disk.sectors }, net: {} });
    r.inspectCharts(replayed.inspect);
    r.loadElf(dnsElf);
    const out = await runMachine(r, { untilIcount: final.icount });
    expect(out.reason).toBe('until');
    expect(r.digest()).toBe(final.digest);
    // No backend: the log answered every read, and no frame went anywhere.
    expect(replayed.last.get('virtio-blk-7')).toEqual({ requests: 'idle', backend: 'deferred' });
    expect(replayed.last.get('virtio-net-6')).toEqual({ rx: 'ready', link: 'down' });
    expect(replayed.events.get('virtio-blk-7')).toEqual(blk);

    // The memoized charts (no inspector) replay the actors' recording to the same machine.
    const plainEnv = new ReplayEnv({ digest: (mm) => mm.digest() });
    for (const e of log) plainEnv.push(e);
    const plain = new Machine({ env: plainEnv, disk: { sectors: disk.sectors }, net: {} });
    plain.loadElf(dnsElf);
    expect((await runMachine(plain, { untilIcount: final.icount })).reason).toBe('until');
    expect(plain.digest()).toBe(final.digest);
    expect(plain.io!.blk!.chartActor.getSnapshot().value).toEqual({ requests: 'idle', backend: 'deferred' });
    expect(plain.io!.net!.chartActor.getSnapshot().value).toEqual({ rx: 'ready', link: 'down' });
  });
});
