// One fault-injection run (DESIGN §6): a primary and a backup as separate `ftvm` processes
// on loopback, joined through a FaultProxy, running the seq guest under load; faults at
// seeded moments (kill -9 of either process, a cut, stalls, a corrupt byte, the arbiter
// killed around a failover); then the checker reads what the outside world saw.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { EtcdArbiter } from '../arbiter/etcd.js';
import { checkHistory, type CheckResult } from './checker.js';
import type { EtcdServer } from './etcd-server.js';
import { readOutputLog } from './output-log.js';
import { FaultProxy } from './proxy.js';

export type MainFault = 'none' | 'kill-primary' | 'kill-backup' | 'cut' | 'corrupt' | 'arbiter-down';

export interface RunSpec {
  id: number;
  /** bin/ftvm.js */
  cli: string;
  /** The seq guest image (its checker knows every line). */
  guest: string;
  /** A fresh directory for this run's key, outputs and (file) arbiter. */
  dir: string;
  fault: MainFault;
  /** When the main fault strikes, in ms after the backup attached. */
  atMs: number;
  /** Stalls of the channel: [start ms after attach, duration ms]. */
  stalls: Array<[number, number]>;
  /** An etcd to use as the arbiter; a file arbiter in `dir` otherwise. */
  etcd?: EtcdServer;
  /** 'arbiter-down' keeps etcd down this long after killing the primary. */
  arbiterDownMs?: number;
  timeoutMs?: number;
  suspectMs?: number;
}

export interface RunResult {
  id: number;
  fault: MainFault;
  atMs: number;
  stalls: number;
  /** The main fault killed the last replica alive (a double failure: the run may end early). */
  unprotected: boolean;
  /** Faults injected: the main one (if any, and if it happened before the run ended) and each stall. */
  faults: number;
  exit: { primary: string; backup: string };
  hung: boolean;
  /** Kill -> first console byte from the backup gone live. */
  failoverMs: number | undefined;
  failovers: number;
  durationMs: number;
  check: CheckResult;
  claims: Record<number, string>;
}

interface Child {
  proc: ChildProcess;
  exited: Promise<string>;
  stderr: string[];
  firstStdoutMs: number | undefined;
}

function start(cli: string, args: string[]): Child {
  const proc = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const c: Child = {
    proc,
    stderr: [],
    firstStdoutMs: undefined,
    exited: new Promise((resolve) => proc.once('exit', (code, sig) => resolve(sig ? sig : String(code)))),
  };
  proc.stdout!.on('data', () => { c.firstStdoutMs ??= performance.now(); });
  createInterface({ input: proc.stderr! }).on('line', (l) => c.stderr.push(l));
  return c;
}

const waitFor = (c: Child, re: RegExp, timeoutMs: number): Promise<RegExpExecArray | undefined> =>
  new Promise((resolve) => {
    const t0 = Date.now();
    const poll = (): void => {
      for (const l of c.stderr) {
        const m = re.exec(l);
        if (m) return resolve(m);
      }
      if (c.proc.exitCode !== null || c.proc.signalCode !== null || Date.now() - t0 > timeoutMs) return resolve(undefined);
      setTimeout(poll, 5);
    };
    poll();
  });

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function readClaims(spec: RunSpec, pairId: string): Promise<Map<number, string>> {
  if (spec.etcd) {
    const a = new EtcdArbiter({ endpoints: [spec.etcd.endpoint], callTimeoutMs: 3000, dialTimeoutMs: 3000 });
    try {
      return await a.claims(pairId);
    } finally {
      await a.close();
    }
  }
  return readClaimFiles(join(spec.dir, 'arbiter'), pairId);
}

/** The file arbiter's record of one pair instance: generation -> claimant. */
export function readClaimFiles(dir: string, pairId: string): Map<number, string> {
  const out = new Map<number, string>();
  for (const f of readdirSync(dir)) {
    const m = /^(.+)\.(\d+)\.claim$/.exec(f);
    if (m && m[1] === pairId) out.set(Number(m[2]), (JSON.parse(readFileSync(join(dir, f), 'utf8')) as { claimant: string }).claimant);
  }
  return out;
}

export async function runOnce(spec: RunSpec): Promise<RunResult> {
  const t0 = performance.now();
  mkdirSync(join(spec.dir, 'arbiter'), { recursive: true });
  const keyFile = join(spec.dir, 'key');
  writeFileSync(keyFile, randomBytes(32).toString('hex'), { mode: 0o600 });
  const pairId = `run${spec.id}-${randomBytes(4).toString('hex')}`;
  const arbiter = spec.etcd ? `etcd:${spec.etcd.endpoint}` : `file:${join(spec.dir, 'arbiter')}`;
  const common = ['--key-file', keyFile, '--arbiter', arbiter, '--pair-id', pairId, ...(spec.suspectMs ? ['--suspect-ms', String(spec.suspectMs)] : [])];
  const timeoutMs = spec.timeoutMs ?? 60_000;

  const primary = start(spec.cli, ['primary', spec.guest, '--listen', '127.0.0.1:0', '--outputs', join(spec.dir, 'primary.jsonl'), ...common]);
  const listening = await waitFor(primary, / primary listening [^ ]+:(\d+) /, 20_000);
  if (!listening) throw new Error(`run ${spec.id}: primary did not listen:\n${primary.stderr.join('\n')}`);
  const proxy = await FaultProxy.start('127.0.0.1', Number(listening[1]));
  const backup = start(spec.cli, ['backup', spec.guest, '--connect', `127.0.0.1:${proxy.port}`, '--outputs', join(spec.dir, 'backup.jsonl'), ...common]);
  await waitFor(primary, / primary backup attached /, 20_000);
  const attachedAt = performance.now();

  let ended = false;
  const bothExited = Promise.all([primary.exited, backup.exited]).then((x) => { ended = true; return x; });
  let faults = 0;
  let killedAt: number | undefined;
  let struck = false;
  const timers: NodeJS.Timeout[] = [];
  const at = (ms: number, fn: () => void | Promise<void>): void => {
    timers.push(setTimeout(() => { if (!ended) void fn(); }, Math.max(0, ms - (performance.now() - attachedAt))));
  };
  for (const [startMs, ms] of spec.stalls) at(startMs, () => { faults++; proxy.stall(ms); });
  switch (spec.fault) {
    case 'kill-primary': at(spec.atMs, () => {
      faults++;
      killedAt = performance.now();
      struck = true;
      primary.proc.kill('SIGKILL');
    }); break;
    case 'kill-backup': at(spec.atMs, () => {
      faults++;
      struck = true;
      backup.proc.kill('SIGKILL');
    }); break;
    case 'cut': at(spec.atMs, () => { faults++; proxy.cut(); }); break;
    case 'corrupt': at(spec.atMs, () => { faults++; proxy.corrupt(); }); break;
    case 'arbiter-down':
      at(spec.atMs, async () => {
        faults++;
        await spec.etcd!.kill();
        killedAt = performance.now();
        struck = true;
        primary.proc.kill('SIGKILL');
        await sleep(spec.arbiterDownMs ?? 1000);
        await spec.etcd!.restart();
      });
      break;
    case 'none': break;
  }

  let hung = false;
  const guard = setTimeout(() => {
    hung = true;
    primary.proc.kill('SIGKILL');
    backup.proc.kill('SIGKILL');
  }, timeoutMs);
  const [pExit, bExit] = await bothExited;
  clearTimeout(guard);
  for (const t of timers) clearTimeout(t);
  await proxy.close();
  // An arbiter-down run may end while etcd is still down: bring it back before reading claims.
  if (spec.etcd && !spec.etcd.running) await spec.etcd.restart();

  const history = [...readOutputLog(join(spec.dir, 'primary.jsonl')), ...readOutputLog(join(spec.dir, 'backup.jsonl'))];
  const claims = await readClaims(spec, pairId);
  const check = checkHistory(history, claims);
  // A kill that struck a replica already alone is a double failure: an earlier (spurious)
  // failover had been won by the victim, so its partner halted. The service may then end,
  // but nothing it released may be lost. The arbiter's record tells who had won.
  const killed = spec.fault === 'kill-backup' ? 'backup' : spec.fault === 'none' || spec.fault === 'cut' || spec.fault === 'corrupt' ? undefined : 'primary';
  const unprotected = killed !== undefined && struck && claims.get(1) === killed;
  if (unprotected && check.incomplete) {
    check.errors = check.errors.filter((e) => !/did not finish/.test(e));
    check.ok = check.errors.length === 0 && check.lost === 0 && check.conflicts === 0 && check.doubleLive === 0;
  }
  if (hung) {
    check.ok = false;
    check.errors.push(`hung: killed after ${timeoutMs} ms`);
  }
  const backupLive = backup.stderr.some((l) => / backup state "live"/.test(l) || /live at icount/.test(l));
  writeFileSync(join(spec.dir, 'stderr.txt'), [...primary.stderr.map((l) => `P ${l}`), ...backup.stderr.map((l) => `B ${l}`)].join('\n') + '\n');
  return {
    id: spec.id,
    fault: spec.fault,
    atMs: spec.atMs,
    stalls: spec.stalls.length,
    unprotected,
    faults,
    exit: { primary: pExit, backup: bExit },
    hung,
    failoverMs: killedAt !== undefined && backup.firstStdoutMs !== undefined && backup.firstStdoutMs > killedAt ? backup.firstStdoutMs - killedAt : undefined,
    failovers: backupLive ? 1 : 0,
    durationMs: performance.now() - t0,
    check,
    claims: Object.fromEntries(claims),
  };
}
