// One fault-injection run of a service guest across processes (issue 13, DESIGN §6): the dns
// or the kv guest as `ftvm primary` and `ftvm backup` with a shared disk (a file, or an NBD
// export of the Debian nbd-server) and a UDP forward, joined through a fault proxy (in a
// process of its own by default, as the seq runs: proxy-process.ts says why), under a
// client load through the service port; a seeded fault (kill -9 of either node, a cut, a
// corrupt byte on the channel, stalls, the arbiter away around a failover, nbd-server
// restarted, or re-protection: one node killed, a new `ftvm backup --join` joining the
// survivor while it serves, then a fault after the join); then the load reads back what it
// was told, the live nodes are stopped with SIGTERM, and the checkers judge:
// - dns: every query answered, as the zone says (checkDns);
// - kv: every acknowledged PUT reads back and is in the log on the disk; no request applied
//   twice (checkKv);
// - the outputs the nodes released: one execution, no split brain, none lost (checkOutputs).

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { decodeReply, encodeRequest, KvClient, KvOp, KvStatus, type KvReply } from '../clients/kv-client.js';
import { checkDns, DnsLoad, parseZone, zeroedDisk } from '../demo/dns-load.js';
import { checkKv, KV_DISK_BYTES, KvLoad, readWal } from '../demo/kv-load.js';
import { checkOutputs, type CheckResult } from './checker.js';
import type { EtcdServer } from './etcd-server.js';
import { freePort } from './etcd-server.js';
import { readOutputLog } from './output-log.js';
import { servicePort } from './service-port.js';
import { FaultProxy } from './proxy.js';
import { inThread, ProcessProxy, type ChannelProxy, type ProxyCounts } from './proxy-child.js';
import { harnessFailure, readClaims, type RunResult } from './harness.js';

export const SERVICE_FAULTS = ['none', 'kill-primary', 'kill-backup', 'cut', 'corrupt', 'arbiter-down', 'nbd-restart', 'join'] as const;
export type ServiceFault = (typeof SERVICE_FAULTS)[number];
/**
 * What strikes after a join: the survivor killed (the joiner goes live and must answer the
 * clients from before the join: the NAT table came with the snapshot), the joiner killed, its
 * channel corrupted or cut, or nothing. 'in-flight' (kv): the primary's disk stalls before the
 * join, one client sends one PUT and never again, a joiner joins, the primary is killed: only
 * the joiner can answer that client, through the mapping its snapshot brought.
 */
export const AFTER_JOIN_FAULTS = ['kill-live', 'kill-joiner', 'corrupt', 'cut', 'none', 'in-flight'] as const;
export type AfterJoinFault = (typeof AFTER_JOIN_FAULTS)[number];
export type ServiceGuest = 'dns' | 'kv';

export interface ServiceSpec {
  id: number;
  cli: string;
  service: ServiceGuest;
  /** guests/ (dns/dns.elf, dns/zone.img, dns/zone.txt, kv/kv.elf). */
  guestsDir: string;
  dir: string;
  fault: ServiceFault;
  /** When the fault strikes, ms after the backup attached. */
  atMs: number;
  stalls: Array<[number, number]>;
  etcd?: EtcdServer;
  /** The disk is an NBD export (always for 'nbd-restart'). */
  nbd?: boolean;
  arbiterDownMs?: number;
  nbdDownMs?: number;
  suspectMs?: number;
  /** 'join': the node killed first (the other one takes the joiner), and what follows the join. */
  joinKill?: 'primary' | 'backup';
  afterJoin?: AfterJoinFault;
  /** 'join': when the after-join fault strikes, ms after the survivor is protected again. */
  afterJoinMs?: number;
  /** 'join': stalls of the joiner's channel, [ms after protected again, duration]. */
  joinStalls?: Array<[number, number]>;
  /** How long the load goes on after the fault (at least; until it got answers again). */
  afterMs?: number;
  timeoutMs?: number;
  /**
   * Where the fault proxies relay (the channel's, a joiner's, the in-flight disk's): 'process'
   * (default), each a process of its own (proxy-process.ts); 'thread', the harness's own
   * thread, which a loaded host starves like the nodes (harness.ts, the seq runs' same choice).
   */
  proxy?: 'process' | 'thread';
}

interface Child {
  proc: ChildProcess;
  exited: Promise<string>;
  stderr: string[];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function start(cli: string, args: string[]): Child {
  const proc = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  const c: Child = { proc, stderr: [], exited: new Promise((resolve) => proc.once('exit', (code, sig) => resolve(sig ?? String(code)))) };
  createInterface({ input: proc.stderr! }).on('line', (l) => c.stderr.push(l));
  return c;
}

const alive = (c: Child): boolean => c.proc.exitCode === null && c.proc.signalCode === null;

async function waitFor(c: Child, re: RegExp, ms: number): Promise<RegExpExecArray | undefined> {
  const t0 = Date.now();
  for (;;) {
    for (const l of c.stderr) {
      const m = re.exec(l);
      if (m) return m;
    }
    if (!alive(c) || Date.now() - t0 > ms) return undefined;
    await sleep(5);
  }
}

/**
 * The Debian nbd-server serving one image, as a daemon (its `-d` mode serves one client, and a
 * backup reads the export's size before the primary dies): tracked by its pid file, stopped
 * by its pid, its per-client children with it.
 */
class NbdDaemon {
  pid = 0;
  constructor(readonly dir: string, readonly image: string, readonly port: number) {}

  async start(): Promise<void> {
    const cfg = join(this.dir, 'nbd.conf');
    const pidFile = join(this.dir, 'nbd.pid');
    rmSync(pidFile, { force: true });
    writeFileSync(cfg, `[generic]\n    listenaddr = 127.0.0.1\n    port = ${this.port}\n[disk]\n    exportname = ${this.image}\n    flush = true\n`);
    const launched = spawnSync('nbd-server', ['-C', cfg, '-p', pidFile], { encoding: 'utf8', timeout: 10_000 });
    if (launched.status !== 0) throw new Error(`nbd-server failed to start: ${launched.stderr}`);
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (existsSync(pidFile)) this.pid = Number(readFileSync(pidFile, 'utf8').trim());
      const up = this.pid > 0 && await new Promise<boolean>((resolve) => {
        const s = connect(this.port, '127.0.0.1');
        s.once('connect', () => { s.destroy(); resolve(true); });
        s.once('error', () => resolve(false));
      });
      if (up) return;
      if (Date.now() > deadline) throw new Error(`nbd-server did not listen on ${this.port}`);
      await sleep(30);
    }
  }

  async stop(): Promise<void> {
    if (this.pid <= 0) return;
    const pid = this.pid;
    this.pid = 0;
    // Its children (one per client) first: killing the daemon alone leaves them serving.
    spawnSync('pkill', ['-KILL', '-P', String(pid)]);
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    const until = Date.now() + 5000;
    while (Date.now() < until) {
      try {
        if (/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'))) break;
      } catch {
        break;
      }
      await sleep(10);
    }
  }
}

const GUEST_PORT: Record<ServiceGuest, number> = { dns: 53, kv: 7000 };
/** How long the backup may take to attach (start, connect through the proxy, be admitted). */
const ATTACH_WAIT_MS = 60_000;

/** The mappings a joiner gone live took from the join snapshot, as it says at go-live. */
function imported(c: Child | undefined): number | undefined {
  const m = c?.stderr.map((l) => /client mappings from the log(?: and (\d+) from the join snapshot)?/.exec(l)).find(Boolean);
  return m ? Number(m[1] ?? 0) : undefined;
}

/** A fault proxy to a target on loopback, where the spec says it relays. */
const startProxy = async (spec: ServiceSpec, targetPort: number): Promise<ChannelProxy> =>
  spec.proxy === 'thread' ? inThread(await FaultProxy.start('127.0.0.1', targetPort)) : ProcessProxy.start('127.0.0.1', targetPort);

export async function runServiceOnce(spec: ServiceSpec): Promise<RunResult> {
  const t0 = performance.now();
  try {
    return await runService(spec, t0);
  } catch (e) {
    return harnessFailure(spec, t0, e);
  }
}

async function runService(spec: ServiceSpec, t0: number): Promise<RunResult> {
  const errors: string[] = [];
  const guestPort = GUEST_PORT[spec.service];
  const elf = join(spec.guestsDir, spec.service, `${spec.service}.elf`);
  const image = join(spec.dir, `${spec.service}.img`);
  if (spec.service === 'dns') copyFileSync(join(spec.guestsDir, 'dns', 'zone.img'), image);
  else zeroedDisk(image, KV_DISK_BYTES);
  const inFlight = spec.fault === 'join' && spec.afterJoin === 'in-flight';
  if (inFlight && spec.service !== 'kv') throw new Error('in-flight is a kv fault (a PUT waits for its disk write)');
  const nbd = spec.nbd || spec.fault === 'nbd-restart' || inFlight ? new NbdDaemon(spec.dir, image, await freePort()) : undefined;
  await nbd?.start();
  const diskSpec = nbd ? `nbd://127.0.0.1:${nbd.port}/disk` : `file:${image}`;
  // 'in-flight': the primary reaches the export through a proxy that can hold its writes.
  const diskProxy = inFlight ? await startProxy(spec, nbd!.port).catch(async (e: unknown) => {
    await nbd?.stop();
    throw e;
  }) : undefined;
  const primaryDisk = ['--disk', diskProxy ? `nbd://127.0.0.1:${diskProxy.port}/disk` : diskSpec];
  const disk = ['--disk', diskSpec];

  const arbiterDir = join(spec.dir, 'arbiter');
  mkdirSync(arbiterDir, { recursive: true });
  const keyFile = join(spec.dir, 'key');
  writeFileSync(keyFile, randomBytes(32).toString('hex'), { mode: 0o600 });
  const arbiter = spec.etcd ? `etcd:${spec.etcd.endpoint}` : `file:${arbiterDir}`;
  const common = ['--key-file', keyFile, '--arbiter', arbiter, ...(spec.suspectMs ? ['--suspect-ms', String(spec.suspectMs)] : [])];
  const outputs = (node: string): string => join(spec.dir, `${node}.jsonl`);

  // The service port is outside the ephemeral range (service-port.ts): between a kill and the
  // new primary's bind, a client's own socket could be given a port from it and take its own
  // query back as the answer. Chosen free; taken meanwhile (another run's), another one.
  let primary: Child;
  let fwd: RegExpExecArray | undefined;
  for (let attempt = 1; ; attempt++) {
    const servicePortNow = await servicePort();
    primary = start(spec.cli, ['primary', elf, '--listen', '127.0.0.1:0', '--net', `udp:127.0.0.1:${servicePortNow}:${guestPort}`, '--outputs', outputs('primary'), ...primaryDisk, ...common]);
    fwd = await waitFor(primary, / primary forwarding udp 127\.0\.0\.1:(\d+) -> guest port/, 20_000);
    if (fwd || attempt === 3 || !primary.stderr.some((l) => / is in use/.test(l))) break;
    await primary.exited;
  }
  const listening = fwd ? await waitFor(primary, / primary listening [^ ]+:(\d+) pair (\S+)/, 20_000) : undefined;
  if (!fwd || !listening) {
    primary.proc.kill('SIGKILL');
    await primary.exited;
    await nbd?.stop();
    throw new Error(`the primary did not serve (stderr: ${primary.stderr.slice(-3).join(' | ')})`);
  }
  const port = Number(fwd[1]);
  const pairId = listening[2];
  const proxy = await startProxy(spec, Number(listening[1])).catch(async (e: unknown) => {
    primary.proc.kill('SIGKILL');
    await primary.exited;
    await diskProxy?.close();
    await nbd?.stop();
    throw e;
  });
  const forward = ['--net', `udp:127.0.0.1:${port}:${guestPort}`];
  // A backup that may go live before a join listens for the joiner, as `ftvm backup --listen` does.
  const backup = start(spec.cli, ['backup', elf, '--connect', `127.0.0.1:${proxy.port}`, ...forward, ...disk, '--outputs', outputs('backup'), ...(spec.fault === 'join' ? ['--listen', '127.0.0.1:0'] : []), ...common]);
  // Two node starts in a row (the proxy's process, then the backup's): on a host at load 20
  // each took seconds, and 3 of 32 'none' runs saw the attach only 20-27 s after the listen.
  if (!(await waitFor(primary, / primary backup attached /, ATTACH_WAIT_MS))) errors.push(`the backup never attached within ${ATTACH_WAIT_MS / 1000} s`);
  const attachedAt = performance.now();

  const load = spec.service === 'dns' ? new DnsLoad({ port, seed: spec.id, concurrency: 3 }) : new KvLoad({ port, seed: spec.id });
  load.start();

  const killed = new Set<string>();
  let struck = false;
  let killedAt: number | undefined;
  let faultAt: number | undefined;
  let stalls = 0;
  /** 'join': the new backup, the proxy its channel runs through, and how far the join got. */
  let joiner: Child | undefined;
  let joinProxy: ChannelProxy | undefined;
  const joinRun: { first?: string; survivor?: string; joinedMs?: number; after?: AfterJoinFault; afterStruck: boolean; missed?: string } = { afterStruck: false };
  /** 'in-flight': the client that asks once, before the join, and what it got. */
  let oneShot: { socket: Socket; key: Buffer; value: Buffer; replies: KvReply[]; sent: boolean; answeredAt?: number } | undefined;
  const timers: NodeJS.Timeout[] = [];
  const pending: Promise<unknown>[] = [];
  const at = (ms: number, fn: () => void | Promise<void>): void => {
    timers.push(setTimeout(() => pending.push(Promise.resolve(fn())), Math.max(0, ms - (performance.now() - attachedAt))));
  };
  /** kill -9; `serving`: the node the clients reach now (the first answer after it is the failover's). */
  const kill = (c: Child, node: string, serving = node === 'primary'): boolean => {
    if (!alive(c)) return false;
    struck = true;
    killed.add(node);
    if (serving) killedAt = performance.now();
    c.proc.kill('SIGKILL');
    return true;
  };
  /**
   * Re-protection under load (DESIGN §3): one node killed, the survivor (alone, serving) takes
   * a new `ftvm backup --join` through its own fault proxy, then the after-join fault.
   */
  /**
   * 'in-flight': one PUT from a client of its own, sent once; the primary's disk holds the
   * write that carries its key (the load's writes before it go through), so the guest waits
   * for it. The primary (alone) releases the write at once, so its --outputs show that the
   * guest has the request: the frame naming this client is before the join, in no log the
   * joiner will replay.
   */
  const putInFlight = async (): Promise<boolean> => {
    const socket = createSocket('udp4');
    const o: NonNullable<typeof oneShot> = { socket, key: Buffer.from(`in-flight-${spec.id}`), value: Buffer.from(`asked once, before the join (run ${spec.id})`), replies: [], sent: false };
    oneShot = o;
    // Set before the PUT leaves (a proxy in its own process says when it has it).
    await diskProxy!.holdWhen(o.key, 120_000);
    socket.on('message', (m) => {
      const r = decodeReply(m);
      if (!r) return;
      o.replies.push(r);
      o.answeredAt ??= performance.now();
    });
    await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
    socket.send(encodeRequest({ op: KvOp.Put, clientId: 0x1f00_0000 + spec.id, requestId: 1, key: o.key, value: o.value }), port, '127.0.0.1');
    o.sent = true;
    const t = Date.now();
    const written = (): boolean => readOutputLog(outputs('primary')).some((x) => x.output.kind === 'disk-write' && Buffer.from(x.output.data).includes(o.key));
    while (!written() && alive(primary) && Date.now() - t < 10_000) await sleep(20);
    // Answered already (the key's bytes split across two chunks, the write went through): the
    // run goes on as kill-live, and the check below does not apply.
    if (written() || o.replies.length > 0) return true;
    if (alive(primary)) errors.push('in-flight: the guest never wrote the PUT sent before the join');
    joinRun.missed = alive(primary) ? 'PUT not written' : 'the primary exited';
    return false;
  };
  const joinThenFault = async (): Promise<void> => {
    // 'in-flight' needs the primary alive: its disk is the one that holds the write.
    const first = inFlight ? 'backup' : spec.joinKill ?? 'backup';
    const [victim, survivor, name]: [Child, Child, string] = first === 'primary' ? [primary, backup, 'backup'] : [backup, primary, 'primary'];
    joinRun.first = first;
    joinRun.survivor = name;
    if (!kill(victim, first)) return;
    const offer = await waitFor(survivor, new RegExp(` ${name} alone: a new backup may join on port (\\d+) \\(generation \\d+\\)`), 20_000);
    if (!offer) {
      // The survivor halted (it had lost the arbiter in a stall: a double failure) or never got there.
      if (alive(survivor)) errors.push(`the ${name} never offered a join after the ${first} was killed`);
      joinRun.missed = alive(survivor) ? 'no offer' : `the ${name} exited`;
      return;
    }
    if (inFlight && !(await putInFlight())) return;
    try {
      joinProxy = await startProxy(spec, Number(offer[1]));
    } catch (e) {
      errors.push(`the joiner's fault proxy did not start: ${(e as Error).message}`);
      joinRun.missed = 'no proxy';
      return;
    }
    const t = performance.now();
    joiner = start(spec.cli, ['backup', elf, '--join', `127.0.0.1:${joinProxy.port}`, '--name', 'joiner', ...forward, ...disk, '--outputs', outputs('joiner'), ...common]);
    const protectedAgain = await waitFor(survivor, new RegExp(` ${name} re-protected: join to protected in`), 30_000);
    if (!protectedAgain) {
      if (alive(survivor)) errors.push(`the joiner never caught up with the ${name}`);
      joinRun.missed = alive(survivor) ? 'not caught up' : `the ${name} exited`;
      return;
    }
    joinRun.joinedMs = performance.now() - t;
    const jp = joinProxy;
    for (const [s, ms] of spec.joinStalls ?? []) timers.push(setTimeout(() => { stalls++; jp.stall(ms); }, s));
    await sleep(spec.afterJoinMs ?? 500);
    joinRun.after = spec.afterJoin ?? 'none';
    switch (joinRun.after) {
      case 'kill-live': case 'in-flight': joinRun.afterStruck = kill(survivor, name, true); break;
      case 'kill-joiner': joinRun.afterStruck = kill(joiner, 'joiner', false); break;
      case 'corrupt': joinRun.afterStruck = true; jp.corrupt(); break;
      case 'cut': joinRun.afterStruck = true; jp.cut(); break;
      case 'none': break;
    }
  };
  for (const [s, ms] of spec.stalls) at(s, () => { stalls++; proxy.stall(ms); });
  at(spec.atMs, async () => {
    faultAt = performance.now();
    switch (spec.fault) {
      case 'none': return;
      case 'kill-primary': kill(primary, 'primary'); return;
      case 'kill-backup': kill(backup, 'backup'); return;
      case 'cut': struck = true; proxy.cut(); return;
      // A flipped bit in the log stream: TLS rejects the record, the channel fails as a cut.
      case 'corrupt': struck = true; proxy.corrupt(); return;
      case 'join': return joinThenFault();
      case 'arbiter-down': {
        if (spec.etcd) await spec.etcd.kill();
        else renameSync(arbiterDir, `${arbiterDir}.away`);
        kill(primary, 'primary');
        await sleep(spec.arbiterDownMs ?? 1000);
        if (spec.etcd) await spec.etcd.restart();
        else renameSync(`${arbiterDir}.away`, arbiterDir);
        return;
      }
      case 'nbd-restart': {
        struck = true;
        await nbd!.stop();
        await sleep(spec.nbdDownMs ?? 700);
        await nbd!.start();
        return;
      }
    }
  });

  // The load goes on past the fault until the clients have answers again, or a while.
  const deadline = attachedAt + spec.atMs + (spec.timeoutMs ?? 30_000);
  while (faultAt === undefined && performance.now() < deadline) await sleep(10);
  await Promise.all(pending);
  const answeredAtFault = load.answered;
  const settle = performance.now() + (spec.afterMs ?? 1500);
  while (performance.now() < deadline && (performance.now() < settle || load.answered < answeredAtFault + 20)) await sleep(10);
  for (const t of timers) clearTimeout(t);
  await Promise.all(pending);
  await load.stop();
  const outage = load.answered < answeredAtFault + 20;
  // 'in-flight': the one-shot client never asks again; only the joiner gone live can answer it.
  const inFlightLines: string[] = [];
  // Held across the join: sent before it, the primary killed after it, no answer before the kill.
  const heldAcrossJoin = oneShot?.sent === true && joinRun.afterStruck && !(oneShot.answeredAt !== undefined && killedAt !== undefined && oneShot.answeredAt < killedAt);
  if (oneShot?.sent && joinRun.afterStruck && !heldAcrossJoin) inFlightLines.push('in-flight PUT: answered before the kill (its write was not held): not checked');
  if (oneShot && heldAcrossJoin) {
    const t = performance.now();
    while (oneShot.replies.length === 0 && performance.now() - t < 10_000) await sleep(20);
    const r = oneShot.replies[0];
    if (!r) errors.push('in-flight: the PUT sent once, before the join, got no answer from the joiner gone live');
    else if (r.status !== KvStatus.Ok || r.requestId !== 1) errors.push(`in-flight: the PUT sent before the join was answered with status ${r.status}, request ${r.requestId}`);
    const after = r && killedAt !== undefined && oneShot.answeredAt !== undefined ? ` ${(oneShot.answeredAt - killedAt).toFixed(0)} ms after the kill` : '';
    inFlightLines.push(`in-flight PUT: ${r ? `answered (status ${r.status})${after}` : 'no answer'}`);
  }
  oneShot?.socket.close();

  // kv: every acknowledged key read back from whichever node serves now.
  const readBack = new Map<string, string | undefined>();
  if (load instanceof KvLoad && !outage) {
    const reader = new KvClient({ servers: [{ host: '127.0.0.1', port }], timeoutMs: 100, maxTimeoutMs: 400, attemptsPerServer: 40 });
    try {
      for (const key of load.acked.keys()) {
        const r = await reader.request(KvOp.Get, Buffer.from(key)).catch(() => undefined);
        readBack.set(key, r?.status === KvStatus.Ok ? r.value.toString() : undefined);
      }
      if (oneShot?.replies[0]?.status === KvStatus.Ok) {
        const r = await reader.request(KvOp.Get, oneShot.key).catch(() => undefined);
        if (r?.status !== KvStatus.Ok || !r.value.equals(oneShot.value)) errors.push(`in-flight: the acknowledged PUT sent before the join reads back as ${r ? `status ${r.status} '${r.value.toString()}'` : 'no answer'}`);
      }
    } finally {
      reader.close();
    }
  }

  // A clean stop of whatever still runs (DESIGN: SIGTERM stops the guest, flushes the disk).
  const stopping = performance.now();
  const nodes: Array<[string, Child]> = [['primary', primary], ['backup', backup], ...(joiner ? [['joiner', joiner] as [string, Child]] : [])];
  for (const [, c] of nodes) if (alive(c)) c.proc.kill('SIGTERM');
  let hung = false;
  const guard = setTimeout(() => {
    hung = true;
    for (const [, c] of nodes) c.proc.kill('SIGKILL');
  }, 20_000);
  const exits = await Promise.all(nodes.map(([, c]) => c.exited));
  const [pExit, bExit] = exits as [string, string];
  const jExit = joiner ? exits[2] : undefined;
  clearTimeout(guard);
  const relayed = async (role: 'channel' | 'join' | 'disk', p: ChannelProxy | undefined): Promise<Array<{ role: typeof role; in: 'process' | 'thread'; pid?: number } & ProxyCounts>> => {
    if (!p) return [];
    const counts = await p.close();
    return [{ role, ...(p instanceof ProcessProxy ? { in: 'process' as const, pid: p.pid } : { in: 'thread' as const }), ...counts }];
  };
  const proxies = [...await relayed('channel', proxy), ...await relayed('join', joinProxy), ...await relayed('disk', diskProxy)];
  if (spec.etcd && !spec.etcd.running) await spec.etcd.restart();
  if (!existsSync(arbiterDir) && existsSync(`${arbiterDir}.away`)) renameSync(`${arbiterDir}.away`, arbiterDir);
  await nbd?.stop();
  if (hung) errors.push(`hung: a node did not exit ${((performance.now() - stopping) / 1000).toFixed(0)} s after SIGTERM`);

  const claims = await readClaims(spec.etcd, arbiterDir, pairId);
  const check: CheckResult = checkOutputs(nodes.flatMap(([n]) => readOutputLog(outputs(n))), claims);
  // No service after the fault is excused only as a double failure (as judgeOutage does for
  // the seq guest): every node the harness did not kill halted having lost the arbiter to one
  // it then killed. The replica the fault struck was alone: nothing was left to fail over to.
  const killedHolds = [...claims.values()].some((holder) => killed.has(holder));
  const unprotected = outage && killed.size > 0 && nodes.every(([node], i) => killed.has(node) || (exits[i] === '3' && killedHolds));
  if (outage && !unprotected) errors.push(`outage: ${load.answered - answeredAtFault} requests answered after the ${spec.fault} fault`);
  let service: { errors: string[]; lines: string[] };
  if (load instanceof KvLoad) {
    const wal = readWal(readFileSync(image));
    const kv = checkKv(load, readBack, wal);
    // Unprotected and killed: nobody serves to read back from, but the disk must still hold
    // every acknowledged PUT once, and no request twice.
    service = { errors: unprotected ? kv.errors.filter((e) => !/ reads back as |^failed: GET: /.test(e)) : kv.errors, lines: kv.lines };
    if (load.acked.size === 0 && !unprotected) service.errors.push('no PUT was acknowledged');
  } else {
    const dns = checkDns(parseZone(readFileSync(join(spec.guestsDir, 'dns', 'zone.txt'), 'utf8')), load.records);
    // Unprotected and killed: the queries after the kill had no server; those answered must be right.
    service = {
      errors: unprotected ? dns.errors.filter((e) => !/: no answer after \d+ tries$/.test(e)) : dns.errors,
      lines: [`queries: ${load.records.length}, unanswered ${dns.unanswered}, wrong ${dns.wrong}, retries ${load.retries}`],
    };
  }
  check.errors.push(...errors, ...service.errors);
  // The NBD client says when its server went away and came back (issue 11: the backend says so).
  if (spec.fault === 'nbd-restart' && struck && ![...primary.stderr, ...backup.stderr].some((l) => /nbd .*reconnected/.test(l))) check.errors.push('no "nbd ... reconnected" line from the live node');
  // Replay is deterministic by construction: a divergence is a bug.
  nodes.forEach(([node, c], i) => {
    const code = exits[i]!;
    if (code === '4' && c.stderr.some((l) => /diverge/.test(l))) check.errors.push(`${node} diverged`);
    // Not killed: it ended by SIGTERM (0, or 6 with unreleased outputs said), or halted having lost the arbiter (3).
    // A SIGTERM that came as the node was already exiting, its run over (its stats line out,
    // e.g. having just lost the arbiter), meets no handler any more: as harness.ts says, the
    // default action ends it, with nothing left to release.
    const over = code === 'SIGTERM' && c.stderr.some((l) => / (primary|backup) stats /.test(l));
    if (!killed.has(node) && !over && !['0', '3', '6'].includes(code)) check.errors.push(`${node} exited ${code}`);
    // Every reply finds its client: a backup learns the table from the log, a joiner gets the
    // rest with the snapshot (ft/snapshot-wire.ts).
    const unmapped = c.stderr.find((l) => /UDP to an unmapped port/.test(l));
    if (unmapped) check.errors.push(`${node} dropped replies to clients it did not know: ${unmapped.replace(/^.*\] /, '')}`);
    if (c.stderr.some((l) => /NAT table is unusable/.test(l))) check.errors.push(`${node} could not read the join snapshot's NAT table`);
  });
  if (spec.fault === 'join' && joinRun.missed === undefined && joinRun.joinedMs === undefined) check.errors.push('the join never happened');
  check.ok = check.errors.length === 0;
  const firstAnswerAfterKill = killedAt === undefined ? undefined : load.answerTimes.find((t) => t > killedAt!);
  if (spec.fault === 'join') {
    service.lines.push(`join: ${joinRun.first ?? 'nothing'} killed, ${joinRun.joinedMs === undefined ? `no join (${joinRun.missed ?? 'the run ended'})` : `joined the ${joinRun.survivor} in ${joinRun.joinedMs.toFixed(0)} ms, then ${joinRun.after}`}`);
    const mappings = joiner?.stderr.find((l) => /backup knew \d+ client mappings/.test(l));
    if (mappings) service.lines.push(`joiner: ${mappings.replace(/^.*\] /, '')}`);
    service.lines.push(...inFlightLines);
  }
  writeFileSync(join(spec.dir, 'stderr.txt'), [
    ...service.lines.map((l) => `C ${l}`), ...primary.stderr.map((l) => `P ${l}`), ...backup.stderr.map((l) => `B ${l}`),
    ...(joiner?.stderr ?? []).map((l) => `J ${l}`),
  ].join('\n') + '\n');
  const wentLive = nodes.filter(([n, c]) => n !== 'primary' && c.stderr.some((l) => /live at icount/.test(l))).length;
  return {
    id: spec.id,
    fault: spec.fault,
    atMs: spec.atMs,
    stalls: spec.stalls.length,
    pairId,
    unprotected,
    faults: stalls + (struck ? 1 : 0) + (joinRun.afterStruck ? 1 : 0),
    struck,
    exit: { primary: pExit, backup: bExit, ...(jExit === undefined ? {} : { joiner: jExit }) },
    hung,
    // Kill -> the first answer the clients got after it (from the new primary, or the old one on the same host in the first ms).
    failoverMs: firstAnswerAfterKill === undefined || killedAt === undefined ? undefined : firstAnswerAfterKill - killedAt,
    failovers: wentLive,
    durationMs: performance.now() - t0,
    check,
    claims: Object.fromEntries(claims),
    extras: [],
    service: {
      guest: spec.service, lines: service.lines, acked: load instanceof KvLoad ? load.acked.size : undefined, answered: load.answered, proxies,
      ...(spec.fault === 'join' ? {
        join: {
          joined: joinRun.joinedMs !== undefined, after: joinRun.after, imported: imported(joiner),
          ...(oneShot && heldAcrossJoin ? { inFlightAnswered: oneShot.replies.length > 0 } : {}),
        },
      } : {}),
    },
  };
}

