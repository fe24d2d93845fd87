// One fault-injection run (DESIGN §6): a primary and a backup as separate `ftvm` processes
// on loopback, joined through a FaultProxy, running a seq guest under load; faults at seeded
// moments; then the checker reads what the outside world saw.
//
// Two families of faults:
// - failures (kill -9 of either process, a cut, stalls, a corrupt byte, the arbiter killed
//   around a failover);
// - operator errors (issue 11, DESIGN §3 Identity and Membership): a third backup connecting
//   to a running pair (right key or wrong key), a rerun on the arbiter and key of an earlier
//   run, a backup of another image or memory size, stray connections before the backup
//   attaches, SIGTERM of either node, and the file arbiter's directory gone at a claim.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { EtcdArbiter } from '../arbiter/etcd.js';
import { checkHistory, judgeOutage, type CheckResult, type ReplicaFate } from './checker.js';
import type { EtcdServer } from './etcd-server.js';
import { runNbdRestart } from './nbd-restart.js';
import { readOutputLog } from './output-log.js';
import { FaultProxy } from './proxy.js';
import { inThread, ProcessProxy, type ChannelProxy, type ProxyCounts } from './proxy-child.js';
import type { ServiceFault } from './service-run.js';

export const FAILURE_FAULTS = ['none', 'kill-primary', 'kill-backup', 'cut', 'corrupt', 'arbiter-down'] as const;
export const OPERATOR_FAULTS = [
  'extra-backup', 'extra-backup-wrong-key', 'rerun', 'other-image', 'other-mem', 'stray',
  'sigterm-primary', 'sigterm-backup', 'arbiter-down-file', 'nbd-restart',
] as const;
export type MainFault = (typeof FAILURE_FAULTS)[number] | (typeof OPERATOR_FAULTS)[number];

/** The exit code of a backup the primary refused (DESIGN §3 Membership). */
export const EXIT_REFUSED = 5;
/** The exit code of a node stopped by SIGTERM/SIGINT with outputs it never released. */
export const EXIT_UNRELEASED = 6;

export type StrayKind = 'bytes' | 'http' | 'wrong-key';

export interface RunSpec {
  id: number;
  /** bin/ftvm.js */
  cli: string;
  /** A seq guest image (its checker knows every line). */
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
  /** 'arbiter-down' and 'arbiter-down-file' keep the arbiter away this long after killing the primary. */
  arbiterDownMs?: number;
  /** 'other-image': the image of the wrong backup (guests/hello/hello.elf). */
  otherGuest?: string;
  /** 'other-mem': the wrong backup's --mem (MiB; the pair runs the default). */
  otherMemMiB?: number;
  /** 'stray': the connections made before the backup attaches, in this order. */
  strays?: StrayKind[];
  /** 'nbd-restart': the kv guest, and how long nbd-server stays away. */
  kvGuest?: string;
  nbdDownMs?: number;
  /** 'rerun': the earlier run's guest (short: it only has to leave a claim behind). */
  previousGuest?: string;
  /** 'rerun': when the earlier run's primary is killed, ms after its backup attached. */
  previousAtMs?: number;
  timeoutMs?: number;
  suspectMs?: number;
  /**
   * Where the fault proxy relays: 'process' (default), a process of its own (proxy-process.ts);
   * 'thread', the harness's own thread, as before the fourth detection pass (it starved there
   * under load: docs/BENCHMARKS.md, "Detection, fourth pass").
   */
  proxy?: 'process' | 'thread';
  /** More flags for both nodes of the pair (e.g. `--heartbeat-link`, `--no-heartbeat-link`). */
  nodeArgs?: string[];
}

/** The heartbeat link's counts of a run (from the nodes' closing lines) and the proxy's relays. */
export interface BeatCounts {
  /** Beats each node's link sent and heard (undefined: the node printed no link line: off, or killed). */
  primary: { sent: number; heard: number } | undefined;
  backup: { sent: number; heard: number } | undefined;
  /** What the proxy relayed: datagrams up (backup -> primary), down, and dropped by stalls; log bytes. */
  proxy: ProxyCounts;
}

/** A backup the primary must refuse: a third one, another image or memory size, a wrong key. */
export interface ExtraBackup {
  name: string;
  why: string;
  /** Exit code or signal; undefined if it never started because the run was over. */
  exit: string | undefined;
  /** Its `ftvm: refused ...` line, if any. */
  refused: string | undefined;
  /** Outputs it released (must be 0). */
  outputs: number;
  /** It connected after the primary had gone: the fault did not land. */
  missed: boolean;
}

export interface RunResult {
  id: number;
  fault: MainFault | ServiceFault;
  atMs: number;
  stalls: number;
  /** The pair instance id the primary printed. */
  pairId: string | undefined;
  /** An outage excused as a double failure: every replica that survived had lost the arbiter to one the harness killed. */
  unprotected: boolean;
  /** Faults injected: the main one (if any, and if it happened before the run ended) and each stall. */
  faults: number;
  /** The main fault landed (happened while the pair ran). */
  struck: boolean;
  /** Exit codes or signals; `joiner` for a service run's `backup --join` (service-run.ts). */
  exit: { primary: string; backup: string; joiner?: string };
  hung: boolean;
  /** Kill -> first console byte from the backup gone live. */
  failoverMs: number | undefined;
  failovers: number;
  durationMs: number;
  check: CheckResult;
  claims: Record<number, string>;
  extras: ExtraBackup[];
  /** A service guest's run (service-run.ts): what its clients' checker found. */
  service?: {
    guest: 'dns' | 'kv'; lines: string[]; acked: number | undefined; answered: number;
    /** A 'join' run: whether the joiner caught up, what struck after, the mappings it took from the snapshot. */
    join?: { joined: boolean; after: string | undefined; imported: number | undefined; inFlightAnswered?: boolean };
    /** The run's fault proxies: the channel's, a joiner's, the in-flight disk's; where each relayed (a process: its pid) and what. */
    proxies?: Array<{ role: 'channel' | 'join' | 'disk'; in: 'process' | 'thread'; pid?: number } & ProxyCounts>;
  };
  /** The heartbeat link's beats and the proxy's relays (the main pair of the run). */
  beats?: BeatCounts;
  /** 'rerun': the earlier run on the same key and arbiter. */
  previous?: { pairId: string | undefined; ok: boolean; claims: Record<number, string>; errors: string[] };
}

interface Line {
  at: number;
  text: string;
}

interface Child {
  proc: ChildProcess;
  exited: Promise<string>;
  exitedAt: number | undefined;
  stderr: string[];
  lines: Line[];
  firstStdoutMs: number | undefined;
}

function start(cli: string, args: string[]): Child {
  const proc = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const c: Child = {
    proc,
    stderr: [],
    lines: [],
    exitedAt: undefined,
    firstStdoutMs: undefined,
    exited: new Promise((resolve) => proc.once('exit', (code, sig) => {
      c.exitedAt = performance.now();
      resolve(sig ? sig : String(code));
    })),
  };
  proc.stdout!.on('data', () => { c.firstStdoutMs ??= performance.now(); });
  createInterface({ input: proc.stderr! }).on('line', (l) => {
    c.stderr.push(l);
    c.lines.push({ at: performance.now(), text: l });
  });
  return c;
}

const alive = (c: Child): boolean => c.proc.exitCode === null && c.proc.signalCode === null;

const waitFor = (c: Child, re: RegExp, timeoutMs: number): Promise<RegExpExecArray | undefined> =>
  new Promise((resolve) => {
    const t0 = Date.now();
    let from = 0;
    const poll = (): void => {
      for (; from < c.stderr.length; from++) {
        const m = re.exec(c.stderr[from]!);
        if (m) return resolve(m);
      }
      if (!alive(c) || Date.now() - t0 > timeoutMs) return resolve(undefined);
      setTimeout(poll, 5);
    };
    poll();
  });

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const fail = (why: string): never => {
  throw new Error(why);
};

/** Who holds each generation's key of one pair instance, from etcd or the file arbiter's directory. */
export async function readClaims(etcd: EtcdServer | undefined, arbiterDir: string, pairId: string | undefined): Promise<Map<number, string>> {
  if (pairId === undefined) return new Map();
  if (etcd) {
    const a = new EtcdArbiter({ endpoints: [etcd.endpoint], callTimeoutMs: 3000, dialTimeoutMs: 3000 });
    try {
      return await a.claims(pairId);
    } finally {
      await a.close();
    }
  }
  return readClaimFiles(arbiterDir, pairId);
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

/** What one run needs from its directory: the key files and the arbiter's spec. */
interface RunEnv {
  keyFile: string;
  wrongKeyFile: string;
  arbiter: string;
  arbiterDir: string | undefined;
  /** What the arbiter's unreachability reports must name. */
  arbiterName: string;
  common: string[];
}

/** How one pair (primary + backup) is run; a 'rerun' runs two in the same directory. */
interface PairPlan {
  prefix: string;
  guest: string;
  fault: MainFault;
  atMs: number;
  stalls: Array<[number, number]>;
  /** 'rerun': the earlier run's instance and claims, which must not excuse this run's outage. */
  earlier?: { pairId: string | undefined; claims: ReadonlyMap<number, string> };
}

interface PairRun {
  pairId: string | undefined;
  primary: Child;
  backup: Child | undefined;
  exit: { primary: string; backup: string };
  hung: boolean;
  faults: number;
  struck: boolean;
  killed: Set<string>;
  killedAt: number | undefined;
  extras: ExtraBackup[];
  check: CheckResult;
  claims: Map<number, string>;
  unprotected: boolean;
  beats: BeatCounts;
}

/** A node's closing line of its heartbeat link: `<role> heartbeat link: beats sent N heard M`. */
function linkCounts(c: Child | undefined): { sent: number; heard: number } | undefined {
  for (const l of c?.stderr ?? []) {
    const m = / heartbeat link: beats sent (\d+) heard (\d+)/.exec(l);
    if (m) return { sent: Number(m[1]), heard: Number(m[2]) };
  }
  return undefined;
}

/** A stray connection to the primary's port: bytes of noise or an HTTP request, then close. */
function strayConnection(port: number, payload: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    const done = (): void => {
      clearTimeout(t);
      s.destroy();
      resolve();
    };
    const t = setTimeout(done, 1000);
    s.on('connect', () => s.write(payload));
    s.on('error', done);
    s.on('close', done);
    s.on('data', () => undefined);
  });
}

async function runExtra(spec: RunSpec, env: RunEnv, port: number, o: { name: string; why: string; guest: string; key: string; memMiB?: number }, primary: Child): Promise<ExtraBackup> {
  const file = join(spec.dir, `${o.name}.jsonl`);
  const x = start(spec.cli, [
    'backup', o.guest, '--connect', `127.0.0.1:${port}`, '--key-file', o.key, '--arbiter', env.arbiter,
    '--outputs', file, '--name', o.name, ...(o.memMiB ? ['--mem', String(o.memMiB)] : []),
    ...(spec.suspectMs ? ['--suspect-ms', String(spec.suspectMs)] : []),
  ]);
  const exit = await Promise.race([x.exited, sleep(20_000).then(() => undefined)]);
  if (exit === undefined) x.proc.kill('SIGKILL');
  const code = exit ?? `${await x.exited} (killed after 20 s)`;
  // Missed: nobody listened on the primary's port when this backup came (ECONNREFUSED, and
  // its channel never opened): the run was over and the primary had closed its listener
  // (it may linger a second or three after that, closing connections). A backup that did
  // reach a listening primary and was not refused is a failure, not a miss.
  const missed = code === '1' && !x.stderr.some((l) => /channel\.open/.test(l)) &&
    x.stderr.some((l) => /no primary: .*ECONNREFUSED/.test(l)) &&
    (primary.exitedAt !== undefined || primary.stderr.some((l) => / primary (halted|stopped|stats)/.test(l)));
  writeFileSync(join(spec.dir, `${o.name}.stderr.txt`), x.stderr.join('\n') + '\n');
  return {
    name: o.name,
    why: o.why,
    exit: code,
    refused: x.stderr.find((l) => /^ftvm: refused/.test(l)),
    outputs: readOutputLog(file).length,
    missed,
  };
}

async function runPair(spec: RunSpec, env: RunEnv, plan: PairPlan): Promise<PairRun> {
  const timeoutMs = spec.timeoutMs ?? 60_000;
  const outputs = (node: string): string => join(spec.dir, `${plan.prefix}${node}.jsonl`);
  const errors: string[] = [];
  const extras: ExtraBackup[] = [];
  const killed = new Set<string>();
  let stalls = 0;
  let struck = false;
  let killedAt: number | undefined;

  const primary = start(spec.cli, ['primary', plan.guest, '--listen', '127.0.0.1:0', '--outputs', outputs('primary'), ...env.common, ...(spec.nodeArgs ?? [])]);
  // Identity (DESIGN §3): the primary makes the pair instance id; the harness only reads it.
  const listening = await waitFor(primary, / primary listening [^ ]+:(\d+) pair (\S+)/, 20_000);
  if (!listening) {
    primary.proc.kill('SIGKILL');
    const exit = await primary.exited;
    throw new Error(`run ${spec.id}: the primary did not listen (exit ${exit}${primary.stderr.length ? `; stderr: ${primary.stderr.slice(-3).join(' | ')}` : ', nothing on stderr'})`);
  }
  const port = Number(listening[1]);
  const pairId = listening[2];

  // Operator errors before the backup attaches: the primary must refuse them one at a time
  // and keep listening.
  if (plan.fault === 'other-image' || plan.fault === 'other-mem') {
    struck = true;
    extras.push(await runExtra(spec, env, port, plan.fault === 'other-image'
      ? { name: 'other-image', why: 'another image', guest: spec.otherGuest ?? fail('other-image needs otherGuest'), key: env.keyFile }
      : { name: 'other-mem', why: 'another memory size', guest: plan.guest, key: env.keyFile, memMiB: spec.otherMemMiB ?? 32 }, primary));
  }
  if (plan.fault === 'stray') {
    struck = true;
    for (const kind of spec.strays ?? ['bytes', 'http', 'wrong-key']) {
      if (kind === 'bytes') await strayConnection(port, randomBytes(16 + (spec.id % 500)));
      else if (kind === 'http') await strayConnection(port, Buffer.from('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n'));
      else extras.push(await runExtra(spec, env, port, { name: 'wrong-key', why: 'a wrong key', guest: plan.guest, key: env.wrongKeyFile }, primary));
    }
    await sleep(50);
  }
  if (!alive(primary)) errors.push(`primary exited (${await primary.exited}) after the ${plan.fault} connection${plan.fault === 'stray' ? 's' : ''} before its backup attached`);

  const proxy: ChannelProxy = spec.proxy === 'thread'
    ? inThread(await FaultProxy.start('127.0.0.1', port))
    : await ProcessProxy.start('127.0.0.1', port).catch((e: unknown) => {
      primary.proc.kill('SIGKILL');
      throw e;
    });
  const backup = alive(primary)
    ? start(spec.cli, ['backup', plan.guest, '--connect', `127.0.0.1:${proxy.port}`, '--outputs', outputs('backup'), ...env.common, ...(spec.nodeArgs ?? [])])
    : undefined;
  if (backup && !(await waitFor(primary, / primary backup attached /, 20_000))) errors.push('the backup never attached');
  const attachedAt = performance.now();

  let ended = false;
  const bothExited = Promise.all([primary.exited, backup?.exited ?? Promise.resolve('never started')]).then((x) => { ended = true; return x; });
  const timers: NodeJS.Timeout[] = [];
  const pending: Promise<unknown>[] = [];
  const at = (ms: number, fn: () => void | Promise<void>): void => {
    timers.push(setTimeout(() => { if (!ended) pending.push(Promise.resolve(fn())); }, Math.max(0, ms - (performance.now() - attachedAt))));
  };
  const kill = (node: 'primary' | 'backup', signal: NodeJS.Signals): void => {
    const c = node === 'primary' ? primary : backup;
    if (!c || !alive(c)) return;
    struck = true;
    killed.add(node);
    if (node === 'primary') killedAt = performance.now();
    c.proc.kill(signal);
  };
  let arbiterAway: { downAt: number; claimingAt: number | undefined; claimedUntil: number; upAt: number; backupOutputs: number } | undefined;

  if (backup) {
    for (const [startMs, ms] of spec.stalls) at(startMs, () => { stalls++; proxy.stall(ms); });
    switch (plan.fault) {
      case 'kill-primary': at(plan.atMs, () => kill('primary', 'SIGKILL')); break;
      case 'kill-backup': at(plan.atMs, () => kill('backup', 'SIGKILL')); break;
      case 'sigterm-primary': at(plan.atMs, () => kill('primary', 'SIGTERM')); break;
      case 'sigterm-backup': at(plan.atMs, () => kill('backup', 'SIGTERM')); break;
      case 'cut': at(plan.atMs, () => { struck = true; proxy.cut(); }); break;
      case 'corrupt': at(plan.atMs, () => { struck = true; proxy.corrupt(); }); break;
      case 'extra-backup':
      case 'extra-backup-wrong-key':
        at(plan.atMs, async () => {
          struck = true;
          const wrong = plan.fault === 'extra-backup-wrong-key';
          extras.push(await runExtra(spec, env, port, { name: wrong ? 'extra-wrong-key' : 'extra-backup', why: wrong ? 'a third backup, wrong key' : 'a third backup', guest: plan.guest, key: wrong ? env.wrongKeyFile : env.keyFile }, primary));
        });
        break;
      case 'arbiter-down':
      case 'arbiter-down-file':
        at(plan.atMs, async () => {
          const file = plan.fault === 'arbiter-down-file';
          // The file arbiter's directory renamed away (chmod 000 does not stop root); etcd killed.
          if (file) renameSync(env.arbiterDir!, `${env.arbiterDir!}.away`);
          else await spec.etcd!.kill();
          const downAt = performance.now();
          kill('primary', 'SIGKILL');
          await sleep(spec.arbiterDownMs ?? 1000);
          // The backup's claim while the arbiter was away: from its "claiming" line to the next
          // state it reports (it may have lost before, to a primary that had won after a stall).
          const from = backup.lines.findIndex((l) => l.at >= downAt && / state .*"claiming"/.test(l.text));
          const claiming = from < 0 ? undefined : backup.lines[from];
          const left = from < 0 ? undefined : backup.lines.slice(from + 1).find((l) => / state /.test(l.text) && !/"claiming"/.test(l.text));
          // DESIGN §3 Split brain: one that cannot reach the arbiter releases no output.
          const backupOutputs = readOutputLog(outputs('backup')).length;
          if (file) renameSync(`${env.arbiterDir!}.away`, env.arbiterDir!);
          else await spec.etcd!.restart();
          const upAt = performance.now();
          arbiterAway = { downAt, claimingAt: claiming?.at, claimedUntil: Math.min(upAt, left?.at ?? upAt), upAt, backupOutputs };
        });
        break;
      case 'rerun': break;
      case 'other-image': case 'other-mem': case 'stray': case 'none': break;
    }
  }

  let hung = false;
  const guard = setTimeout(() => {
    hung = true;
    primary.proc.kill('SIGKILL');
    backup?.proc.kill('SIGKILL');
  }, timeoutMs);
  const [pExit, bExit] = await bothExited;
  clearTimeout(guard);
  for (const t of timers) clearTimeout(t);
  await Promise.all(pending);
  const relayed = await proxy.close();
  // An arbiter-down run may end while etcd is still down: bring it back before reading claims.
  if (spec.etcd && !spec.etcd.running) await spec.etcd.restart();
  if (env.arbiterDir && !existsSync(env.arbiterDir) && existsSync(`${env.arbiterDir}.away`)) renameSync(`${env.arbiterDir}.away`, env.arbiterDir);

  const history = [
    ...readOutputLog(outputs('primary')), ...readOutputLog(outputs('backup')),
    ...extras.flatMap((x) => readOutputLog(join(spec.dir, `${x.name}.jsonl`))),
  ];
  const claims = await readClaims(spec.etcd, join(spec.dir, 'arbiter'), pairId);
  const check = checkHistory(history, claims);

  // No outage where a synced replica survived: an unfinished run is excused only when every
  // replica the harness did not stop had lost the arbiter to one it then stopped.
  const fates: ReplicaFate[] = [
    { node: 'primary', killed: killed.has('primary'), exit: pExit },
    ...(backup ? [{ node: 'backup', killed: killed.has('backup'), exit: bExit }] : []),
  ];
  // If a rerun were (wrongly) the same instance, the earlier run's claims would look like this
  // run's: only claims made in this run may excuse an outage.
  const own = plan.earlier && plan.earlier.pairId === pairId
    ? new Map([...claims].filter(([g]) => !plan.earlier!.claims.has(g)))
    : claims;
  const outage = judgeOutage(check, fates, own);
  if (outage.error) check.errors.push(outage.error);
  check.outage = outage.error !== undefined;

  // Membership (DESIGN §3): a refused backup says why, exits 5, claims nothing, releases nothing.
  for (const x of extras) {
    if (x.missed) continue;
    check.refusedOutputs += x.outputs;
    if (x.outputs > 0) check.errors.push(`${x.name} (${x.why}) released ${x.outputs} outputs`);
    if (x.exit !== String(EXIT_REFUSED)) check.errors.push(`${x.name} (${x.why}) exited ${x.exit}, not ${EXIT_REFUSED} (refused)`);
    else if (!x.refused) check.errors.push(`${x.name} (${x.why}) exited ${EXIT_REFUSED} without an 'ftvm: refused' line`);
    for (const [g, holder] of claims) if (holder === x.name) check.errors.push(`${x.name} (${x.why}) holds arbiter key ${g}`);
  }
  // A third backup that came after the pair had finished did not test anything.
  if (plan.fault.startsWith('extra-') && extras.length > 0 && extras.every((x) => x.missed)) struck = false;
  // The primary refuses each bad connection with a note on stderr, one at a time.
  const refusals = primary.stderr.filter((l) => / refused /.test(l)).length;
  const wanted = plan.fault === 'stray' ? (spec.strays ?? ['bytes', 'http', 'wrong-key']).length : extras.filter((x) => !x.missed).length;
  if (refusals < wanted) check.errors.push(`the primary noted ${refusals} refused connections on stderr, expected ${wanted}`);

  // DESIGN §3 Divergence: a diverged replica was detected and stopped, so nothing wrong left
  // it, but replay is deterministic by construction: a divergence is a bug, and fails the run.
  for (const [node, code, c] of [['primary', pExit, primary], ['backup', bExit, backup]] as const) {
    if (code === '4' && c?.stderr.some((l) => /diverge/.test(l))) check.errors.push(`${node} diverged: ${c.stderr.filter((l) => /diverge/.test(l)).slice(-1)[0]}`);
  }

  // SIGTERM/SIGINT: exit 0 if everything produced was released, else 6 with a line saying how many were not.
  for (const node of ['primary', 'backup'] as const) {
    if (!(plan.fault === `sigterm-${node}` && killed.has(node))) continue;
    const c = node === 'primary' ? primary : backup!;
    const code = node === 'primary' ? pExit : bExit;
    if (code === String(EXIT_UNRELEASED)) {
      if (!c.stderr.some((l) => /\d+ outputs? (unreleased|never released|not released)|unreleased/i.test(l))) check.errors.push(`${node} exited ${EXIT_UNRELEASED} after SIGTERM without saying how many outputs were unreleased`);
    } else if (code === 'SIGTERM' && c.stderr.some((l) => new RegExp(` ${node} stats `).test(l))) {
      // The signal came as the process was already exiting, its run over and every output out
      // (its stats line printed): Node's signal watcher is gone by then and the default
      // action ends it. Nothing was left unreleased, so nothing is wrong.
    } else if (code !== '0') check.errors.push(`${node} exited ${code} after SIGTERM, not 0 or ${EXIT_UNRELEASED}`);
  }

  // The arbiter out of reach at a claim: the claimant says which arbiter and which error, at
  // most about once a second, releases nothing meanwhile, and wins once it is back.
  if (arbiterAway && backup) {
    const a = arbiterAway;
    if (a.backupOutputs > 0) check.errors.push(`the backup released ${a.backupOutputs} outputs while the arbiter was unreachable`);
    const reports = backup.lines.filter((l) => l.at >= a.downAt && l.at <= a.upAt + 100 && l.text.includes(env.arbiterName));
    if (a.claimingAt !== undefined && a.claimedUntil - a.claimingAt >= 200 && reports.length === 0) {
      check.errors.push(`the backup claimed for ${(a.claimedUntil - a.claimingAt).toFixed(0)} ms while the arbiter (${env.arbiterName}) was unreachable and never said so`);
    }
    const allowed = Math.ceil((a.upAt - (a.claimingAt ?? a.downAt)) / 1000) + 1;
    if (reports.length > allowed) check.errors.push(`the backup reported the unreachable arbiter ${reports.length} times in ${(a.upAt - a.downAt).toFixed(0)} ms (at most ${allowed})`);
  }

  if (hung) {
    check.errors.push(`hung: killed after ${timeoutMs} ms`);
  }
  check.errors.unshift(...errors);
  check.ok = check.errors.length === 0;
  writeFileSync(join(spec.dir, `${plan.prefix}stderr.txt`), [
    ...primary.stderr.map((l) => `P ${l}`), ...(backup?.stderr ?? []).map((l) => `B ${l}`),
    ...extras.map((x) => `X ${x.name} exit ${x.exit}${x.missed ? ' (missed: the primary had gone)' : ''}; see ${x.name}.stderr.txt`),
  ].join('\n') + '\n');
  return {
    pairId,
    primary,
    backup,
    exit: { primary: pExit, backup: bExit },
    hung,
    faults: stalls + (struck ? 1 : 0),
    struck,
    killed,
    killedAt,
    extras,
    check,
    claims,
    unprotected: check.incomplete && outage.excused,
    beats: { primary: linkCounts(primary), backup: linkCounts(backup), proxy: relayed },
  };
}

/**
 * One run; a run the harness itself could not carry out (a primary that never listened, an
 * etcd that did not come back) is a failed run with one error, not the end of the batch.
 */
export async function runOnce(spec: RunSpec): Promise<RunResult> {
  const t0 = performance.now();
  try {
    return await runOnceOrThrow(spec, t0);
  } catch (e) {
    return harnessFailure(spec, t0, e);
  }
}

/** The result of a run the harness itself could not carry out: failed, with one error. */
export function harnessFailure(spec: Pick<RunResult, 'id' | 'fault' | 'atMs'> & { stalls: readonly unknown[] }, t0: number, e: unknown): RunResult {
  return {
    id: spec.id, fault: spec.fault, atMs: spec.atMs, stalls: spec.stalls.length, pairId: undefined, unprotected: false,
    faults: 0, struck: false, exit: { primary: 'none', backup: 'none' }, hung: false, failoverMs: undefined, failovers: 0,
    durationMs: performance.now() - t0,
    check: {
      ok: false, lost: 0, incomplete: true, duplicates: 0, conflicts: 0, doubleLive: 0, outage: false, refusedOutputs: 0, lines: 0,
      errors: [`harness: ${(e as Error).message}`],
    },
    claims: {}, extras: [],
  };
}

async function runOnceOrThrow(spec: RunSpec, t0: number): Promise<RunResult> {
  if (spec.fault === 'nbd-restart') {
    // Not a pair: one `ftvm run` of the kv guest on an NBD disk whose server restarts.
    const r = await runNbdRestart({ id: spec.id, cli: spec.cli, guest: spec.kvGuest ?? spec.guest, dir: spec.dir, atMs: spec.atMs, downMs: spec.nbdDownMs ?? 700, ...(spec.timeoutMs ? { timeoutMs: spec.timeoutMs } : {}) });
    return {
      id: spec.id, fault: spec.fault, atMs: spec.atMs, stalls: 0, pairId: undefined, unprotected: false,
      faults: r.struck ? 1 : 0, struck: r.struck, exit: { primary: r.exit, backup: 'none' }, hung: r.hung,
      failoverMs: undefined, failovers: 0, durationMs: performance.now() - t0, check: r.check, claims: {}, extras: [],
    };
  }
  const arbiterDir = join(spec.dir, 'arbiter');
  mkdirSync(arbiterDir, { recursive: true });
  const keyFile = join(spec.dir, 'key');
  writeFileSync(keyFile, randomBytes(32).toString('hex'), { mode: 0o600 });
  const wrongKeyFile = join(spec.dir, 'wrong-key');
  writeFileSync(wrongKeyFile, randomBytes(32).toString('hex'), { mode: 0o600 });
  const arbiter = spec.etcd ? `etcd:${spec.etcd.endpoint}` : `file:${arbiterDir}`;
  const env: RunEnv = {
    keyFile,
    wrongKeyFile,
    arbiter,
    arbiterDir: spec.etcd ? undefined : arbiterDir,
    arbiterName: spec.etcd ? spec.etcd.endpoint : arbiterDir,
    // No --pair-id: every start of a primary is a new pair instance (DESIGN §3 Identity).
    common: ['--key-file', keyFile, '--arbiter', arbiter, ...(spec.suspectMs ? ['--suspect-ms', String(spec.suspectMs)] : [])],
  };

  let previous: RunResult['previous'];
  let earlier: PairPlan['earlier'];
  if (spec.fault === 'rerun') {
    // The earlier run on this key and arbiter: its primary killed early, so its backup wins
    // generation 1 and finishes. A claim stays behind that must never halt the rerun.
    const p = await runPair(spec, env, { prefix: 'previous-', guest: spec.previousGuest ?? spec.guest, fault: 'kill-primary', atMs: spec.previousAtMs ?? 150, stalls: [] });
    previous = { pairId: p.pairId, ok: p.check.ok, claims: Object.fromEntries(p.claims), errors: p.check.errors };
    earlier = { pairId: p.pairId, claims: p.claims };
  }
  const run = await runPair(spec, env, {
    prefix: '',
    guest: spec.guest,
    fault: spec.fault === 'rerun' ? 'kill-backup' : spec.fault,
    atMs: spec.atMs,
    stalls: spec.stalls,
    ...(earlier ? { earlier } : {}),
  });
  const check = run.check;
  if (previous) {
    if (!previous.ok) check.errors.push(`the earlier run failed: ${previous.errors.slice(0, 2).join('; ')}`);
    if (previous.pairId !== undefined && previous.pairId === run.pairId) check.errors.push(`the rerun has the earlier run's pair id ${run.pairId}: not a new instance`);
    check.ok = check.errors.length === 0;
  }
  const backupLive = run.backup?.stderr.some((l) => / backup state "live"/.test(l) || /live at icount/.test(l)) ?? false;
  const firstLive = run.backup?.firstStdoutMs;
  return {
    id: spec.id,
    fault: spec.fault,
    atMs: spec.atMs,
    stalls: spec.stalls.length,
    pairId: run.pairId,
    unprotected: run.unprotected,
    faults: run.faults,
    struck: run.struck,
    exit: run.exit,
    hung: run.hung,
    failoverMs: run.killedAt !== undefined && firstLive !== undefined && firstLive > run.killedAt ? firstLive - run.killedAt : undefined,
    failovers: backupLive ? 1 : 0,
    durationMs: performance.now() - t0,
    check,
    claims: Object.fromEntries(run.claims),
    extras: run.extras,
    beats: run.beats,
    ...(previous ? { previous } : {}),
  };
}
