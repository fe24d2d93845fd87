// The fault harness on the service guests (issue 13): `ftvm primary` and `ftvm backup` with
// a disk and a UDP forward under a client load, one fault each, and the checkers' verdicts.
// `scripts/faults.mjs --service dns|kv` runs hundreds of these; here one of each kind that
// moves the service, so that the harness itself stays true.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runServiceOnce, type ServiceSpec } from '../runtime/faults/service-run.js';
import { root } from './helpers/cli-procs.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function spec(id: number, service: ServiceSpec['service'], fault: ServiceSpec['fault'], extra: Partial<ServiceSpec> = {}): ServiceSpec {
  const dir = mkdtempSync(join(tmpdir(), `ftvm-faults-svc-${id}-`));
  dirs.push(dir);
  return {
    id, service, fault, dir, cli: join(root, 'bin/ftvm.js'), guestsDir: join(root, 'guests'),
    atMs: 700, stalls: [[300, 40]], suspectMs: 600, ...extra,
  };
}

describe('fault runs of the service guests across processes', () => {
  it('kv, kill -9 of the primary: every acknowledged PUT survives on the new primary and the disk, none applied twice', async () => {
    const r = await runServiceOnce(spec(9101, 'kv', 'kill-primary'));
    expect(r.check.errors).toEqual([]);
    expect(r.check.ok).toBe(true);
    expect(r.struck).toBe(true);
    expect(r.exit).toEqual({ primary: 'SIGKILL', backup: '0' });
    expect(r.failovers).toBe(1);
    expect(r.claims).toEqual({ 1: 'backup' });
    expect(r.service!.acked).toBeGreaterThan(0);
    expect(r.service!.lines.join('\n')).toMatch(/acknowledged writes lost: 0;.*\n.*requests applied twice: 0/);
    expect(r.check.lost).toBe(0);
    expect(r.check.doubleLive).toBe(0);
  }, 90_000);

  it('dns on an NBD export, nbd-server restarted under load: every query answered as the zone says', async () => {
    const r = await runServiceOnce(spec(9102, 'dns', 'nbd-restart', { nbdDownMs: 600 }));
    expect(r.check.errors).toEqual([]);
    expect(r.check.ok).toBe(true);
    expect(r.struck).toBe(true);
    expect(r.service!.lines[0]).toMatch(/unanswered 0, wrong 0/);
    expect(r.service!.answered).toBeGreaterThan(20);
  }, 90_000);

  it('kv, the channel cut: one node goes on alone and loses nothing', async () => {
    const r = await runServiceOnce(spec(9103, 'kv', 'cut'));
    expect(r.check.errors).toEqual([]);
    expect(r.check.ok).toBe(true);
    // Exactly one of them halted, having lost the arbiter (exit 3); the other was stopped cleanly.
    expect([r.exit.primary, r.exit.backup].sort()).toEqual(['0', '3']);
    expect(Object.keys(r.claims)).toEqual(['1']);
  }, 90_000);

  it('kv, re-protection under load: the backup killed, a joiner joins the primary, the primary killed: the joiner serves every client, nothing lost', async () => {
    // in-flight: besides the load, one client PUTs once before the join, its write held on the
    // primary's disk: only the joiner gone live can answer it, through the snapshot's NAT table.
    const r = await runServiceOnce(spec(9104, 'kv', 'join', { joinKill: 'backup', afterJoin: 'in-flight', afterJoinMs: 300 }));
    expect(r.check.errors).toEqual([]);
    expect(r.check.ok).toBe(true);
    expect(r.exit).toEqual({ primary: 'SIGKILL', backup: 'SIGKILL', joiner: '0' });
    // The primary won generation 1 when its backup died; the joiner the next one.
    expect(r.claims).toEqual({ 1: 'primary', 2: 'joiner' });
    expect(r.service!.join).toMatchObject({ joined: true, after: 'in-flight', inFlightAnswered: true });
    // The load's three clients and the one-shot spoke before the join: the snapshot brought them.
    expect(r.service!.join!.imported).toBeGreaterThanOrEqual(4);
    expect(r.service!.lines.join('\n')).toMatch(/in-flight PUT: answered \(status 0\) \d+ ms after the kill/);
    expect(r.service!.lines.join('\n')).toMatch(/acknowledged writes lost: 0;.*\n.*requests applied twice: 0/);
    expect(r.faults).toBeGreaterThanOrEqual(3);
  }, 90_000);

  it('dns, a corrupt byte in the log stream: the channel fails as cut, one node serves on, every query answered right', async () => {
    const r = await runServiceOnce(spec(9105, 'dns', 'corrupt'));
    expect(r.check.errors).toEqual([]);
    expect(r.check.ok).toBe(true);
    expect(r.struck).toBe(true);
    expect([r.exit.primary, r.exit.backup].sort()).toEqual(['0', '3']);
    expect(r.service!.lines[0]).toMatch(/unanswered 0, wrong 0/);
  }, 90_000);
});
