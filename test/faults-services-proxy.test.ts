// Where the service fault runs relay (runtime/faults/service-run.ts): the channel's fault proxy
// and a joiner's run in processes of their own by default, as the seq runs' (a proxy on the
// harness's starved thread made healthy pairs fail over: docs/RELIABILITY.md, "Issue 14,
// fourth pass"); `proxy: 'thread'` keeps the old way. Each proxy relays the log, and no proxy
// process outlives its run. Runs the built entries (dist/), as the other process tests.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runServiceOnce, type ServiceSpec } from '../runtime/faults/service-run.js';
import { alive, root } from './helpers/cli-procs.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function spec(id: number, service: ServiceSpec['service'], fault: ServiceSpec['fault'], extra: Partial<ServiceSpec> = {}): ServiceSpec {
  const dir = mkdtempSync(join(tmpdir(), `ftvm-faults-svcproxy-${id}-`));
  dirs.push(dir);
  return {
    id, service, fault, dir, cli: join(root, 'bin/ftvm.js'), guestsDir: join(root, 'guests'),
    atMs: 600, stalls: [[300, 40]], suspectMs: 600, ...extra,
  };
}

describe('service fault runs: where the fault proxies relay', () => {
  it('dns, a join then the survivor killed: the channel\'s and the joiner\'s proxies are processes of their own, gone after the run', async () => {
    const r = await runServiceOnce(spec(9201, 'dns', 'join', { joinKill: 'backup', afterJoin: 'kill-live', afterJoinMs: 300 }));
    expect(r.check.errors).toEqual([]);
    expect(r.check.ok).toBe(true);
    expect(r.service!.join!.joined).toBe(true);
    const proxies = r.service!.proxies!;
    expect(proxies.map((p) => [p.role, p.in])).toEqual([['channel', 'process'], ['join', 'process']]);
    for (const p of proxies) {
      // The log went through it (primary -> backup), the acks back.
      expect(p.bytes.down, p.role).toBeGreaterThan(0);
      expect(p.bytes.up, p.role).toBeGreaterThan(0);
      expect(p.pid, p.role).toBeGreaterThan(0);
      expect(alive(p.pid!), `${p.role} proxy pid ${p.pid} still runs`).toBe(false);
    }
  }, 120_000);

  it('kv, proxy: thread keeps the proxy in the harness\'s thread', async () => {
    const r = await runServiceOnce(spec(9202, 'kv', 'none', { proxy: 'thread' }));
    expect(r.check.errors).toEqual([]);
    expect(r.service!.proxies!.map((p) => [p.role, p.in, p.pid])).toEqual([['channel', 'thread', undefined]]);
    expect(r.service!.proxies![0]!.bytes.down).toBeGreaterThan(0);
  }, 90_000);
});
