// `ftvm primary`: the primary of a pair across processes or hosts. It listens for its backup
// on TCP (TLS-PSK), runs the guest once the backup is attached, logs every input to it, and
// prints the guest's console output as the output rule releases it (DESIGN §3).

import { parseArgs } from 'node:util';
import { createServer, isIPv6 } from 'node:net';
import { createSocket } from 'node:dgram';
import { statSync } from 'node:fs';
import { parseDiskSpec, parseNetSpec } from '../io/spec.js';
import { openDiskIdentity, peekDiskIdentity } from '../io/disk-identity.js';
import type { Observable } from 'rxjs';
import type { Command } from '../cli.js';
import { Machine } from '../machine.js';
import { LiveEnv } from '../env/live.js';
import { ElfError } from '../elf.js';
import type { Arbiter } from '../arbiter/arbiter.js';
import { parseArbiterSpec } from '../arbiter/spec.js';
import { FileArbiter } from '../arbiter/file.js';
import { EtcdArbiter } from '../arbiter/etcd.js';
import { listenPrimary, type TcpBackupListener, type TcpPrimaryEnd } from '../channel/tcp.js';
import { HeartbeatLink, type KeyedEnd } from '../channel/heartbeat.js';
import type { BeatRole } from '../channel/heartbeat-wire.js';
import type { ChannelEvent } from '../channel/channel.js';
import { readKeyFile, type DiskIdentity, type PairIdentity } from '../channel/tcp-frames.js';
import type { ReleasedOutput } from '../ft/output-gate.js';
import { PrimaryNode, type NodeEvent } from '../ft/primary-node.js';
import { newPairInstance } from '../ft/identity.js';
import { PROCESS_TIMING, type FtTiming } from '../ft/timing.js';
import { OutputLogWriter } from '../faults/output-log.js';
import { checkArbiterDir, checkImage, CliError, errorLine, imageDigest, memoryFlag, positiveInt, readErrorText, readImage, writeAllSync, elfCountProblem } from './common.js';
import { checkPortFree, startViews, takeViewFlags, type Views } from '../dashboard/cli.js';
import { IoOpenError, openIo, type OpenedIo } from '../io/open.js';
import type { DiskOptions, NetOptions } from '../io/machine-io.js';
import { checkLiveHook, guardServicePorts, movedAddress, runLiveHook, type LiveEvent } from './on-live.js';

const USAGE = 'primary <elf> --listen HOST:PORT --key-file F --arbiter SPEC [--pair-id ID] [--mem MiB] [--outputs FILE] [--suspect-ms N] [--heartbeat-link] [--no-reprotect] [--inspect [PORT]]\n' +
  '      [--disk file:PATH|nbd://HOST:PORT/EXPORT] [--net udp:[ADDR:]HOSTPORT:GUESTPORT]... [--on-live CMD]';

/** Exit code of a replica that lost the arbiter and halted (the other one is live). */
export const EXIT_HALTED = 3;
export const EXIT_DIVERGED = 4;
/** A backup the primary did not admit (busy, another pair, image or memory size, wrong key). */
export const EXIT_REFUSED = 5;
/** Stopped by SIGTERM/SIGINT while outputs of its guest were still unreleased. */
export const EXIT_UNRELEASED = 6;

export function parseHostPort(flag: string, text: string | undefined): { host: string; port: number } {
  if (text === undefined) throw new CliError(`missing --${flag} HOST:PORT`);
  const m = /^(\[[0-9a-fA-F:]+\]|[^:]+):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new CliError(`--${flag} wants HOST:PORT, got '${text}'`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

export function loadKey(file: string | undefined): Buffer {
  if (!file) throw new CliError('missing --key-file F (hex or raw bytes, at least 16 bytes)');
  try {
    return readKeyFile(file);
  } catch (e) {
    throw new CliError(`${file}: ${readErrorText(e)}`);
  }
}

export function loadArbiter(spec: string | undefined): Arbiter {
  if (!spec) throw new CliError('missing --arbiter SPEC (file:DIR or etcd:HOST:PORT[,HOST:PORT...])');
  if (spec === 'memory') throw new CliError("--arbiter memory cannot protect a pair across processes: use file:DIR or etcd:HOST:PORT");
  let arbiter: Arbiter;
  try {
    arbiter = parseArbiterSpec(spec);
  } catch (e) {
    throw new CliError((e as Error).message);
  }
  const warning = arbiter instanceof FileArbiter ? checkArbiterDir(arbiter.dir) : undefined;
  if (warning !== undefined) process.stderr.write(`ftvm: ${warning}\n`);
  return arbiter;
}

/**
 * An etcd arbiter is asked once at start (a read of this pair's first claim): one out of reach
 * is said at once, not first at a failover, and the client (gRPC) is loaded and connected
 * before a failover needs it. The node runs either way: it needs the arbiter only to claim,
 * and a claim waits for it (reported about once a second).
 */
export function probeArbiter(arbiter: Arbiter, pairId: string): void {
  if (!(arbiter instanceof EtcdArbiter)) return;
  arbiter.holder(pairId, 1).catch((e: unknown) => {
    // Closed meanwhile (the node failed to start, or stopped): it has said why, once.
    if (arbiter.isClosed) return;
    process.stderr.write(`ftvm: arbiter unreachable at start: ${(e as Error).message}; failover waits until it answers\n`);
  });
}

/** `--pair-id` resumes a pair instance on purpose (primary), or names the one expected (backup). */
const PAIR_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;
export function pairIdFlag(text: string | undefined): string | undefined {
  if (text !== undefined && !PAIR_ID.test(text)) throw new CliError(`--pair-id wants letters, digits, '-' and '_' (at most 128), got '${text}'`);
  return text;
}

/** The side-channel file of released outputs, opened before anything runs so a bad path fails at once. */
export function openOutputs(file: string | undefined): OutputLogWriter | undefined {
  if (file === undefined) return undefined;
  try {
    return new OutputLogWriter(file);
  } catch (e) {
    throw new CliError(`--outputs ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such directory' : readErrorText(e)}`);
  }
}

/**
 * SIGTERM/SIGINT stop a node like a crash, but first count what its guest produced and did
 * not release: an operator must hear that outputs were left behind (DESIGN §3 Output rule).
 */
const ignoreLateSignal = (): void => undefined;

export function stopOnSignal(node: { unreleased(): number; crash(why?: string): void }): { readonly by: string | undefined; readonly unreleased: number; off(): void } {
  const state = { by: undefined as string | undefined, unreleased: 0 };
  const stop = (signal: string): void => {
    if (state.by) return;
    state.by = signal;
    state.unreleased = node.unreleased();
    // Signals run between batches: the guest stops at an instruction boundary.
    node.crash(`stopped by ${signal}`);
  };
  const onTerm = (): void => stop('SIGTERM');
  const onInt = (): void => stop('SIGINT');
  process.on('SIGTERM', onTerm);
  process.on('SIGINT', onInt);
  return {
    get by() { return state.by; },
    get unreleased() { return state.unreleased; },
    // The node's run is over: a signal from now on (a supervisor stopping a process that is
    // already closing its connections) must not kill it with the default action and lose the
    // exit code; it exits by itself within seconds (cliRun).
    off: () => {
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
      process.on('SIGTERM', ignoreLateSignal);
      process.on('SIGINT', ignoreLateSignal);
    },
  };
}

/**
 * What `open` opens, unless a stop signal comes first (an NBD server that does not answer
 * keeps its handshake for seconds): then undefined, and whatever it opens later is closed.
 */
export async function unlessStopped<T extends { close(): Promise<void> }>(early: { stopped: Promise<'stopped'> }, open: Promise<T>): Promise<T | undefined> {
  const r = await Promise.race([open, early.stopped]);
  if (r !== 'stopped') return r;
  void open.then((x) => x.close(), () => undefined);
  return undefined;
}

/** A node stopped while it was starting: its guest never ran, nothing was left unreleased. */
export function stoppedAtStart(who: string, by: string): number {
  note(`${who} stopped by ${by} while starting: the guest never ran`);
  return 0;
}

/** The exit of a node stopped by a signal: 0 if nothing was left unreleased, else EXIT_UNRELEASED and one line. */
export function signalExit(who: string, stop: { by: string | undefined; unreleased: number }): number {
  if (stop.unreleased === 0) {
    note(`${who} stopped by ${stop.by}: every output of its guest was released`);
    return 0;
  }
  process.stderr.write(`ftvm: ${who} stopped by ${stop.by} with ${stop.unreleased} output${stop.unreleased === 1 ? '' : 's'} never released\n`);
  return EXIT_UNRELEASED;
}

/**
 * A stop signal while a node is still starting (its start hook, its disk, its ports, its
 * channel), before the node's own handlers (stopOnSignal) are set: noted, and the node stops
 * at its next step with its guest never run (exit 0, nothing to release), instead of Node's
 * default death (exit 143 and no line, a start hook left running without its node).
 */
export function startSignals(): { readonly by: string | undefined; readonly stopped: Promise<'stopped'>; off(): void } {
  let by: string | undefined;
  let resolve: (v: 'stopped') => void = () => undefined;
  const stopped = new Promise<'stopped'>((r) => { resolve = r; });
  const on = (signal: string) => (): void => {
    by ??= signal;
    resolve('stopped');
  };
  const onTerm = on('SIGTERM');
  const onInt = on('SIGINT');
  process.on('SIGTERM', onTerm);
  process.on('SIGINT', onInt);
  return {
    get by() { return by; },
    stopped,
    off: () => {
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
    },
  };
}

export function bootMachine(image: Uint8Array, file: string, memoryMiB: number, io: { disk?: DiskOptions; net?: NetOptions } = {}): Machine {
  const m = new Machine({ memoryMiB, env: new LiveEnv(), ...io });
  try {
    m.loadElf(image);
  } catch (e) {
    if (e instanceof ElfError || e instanceof RangeError) throw new CliError(`${file}: ${e.message}`);
    throw e;
  }
  return m;
}

const t0 = performance.now();
/** State changes go to stderr, one line each: `[seconds] node type detail`. */
export function reportEvents(events$: Observable<NodeEvent>): void {
  // The chart reports every snapshot; a state line is printed only when the state changes.
  let lastState: string | undefined;
  events$.subscribe((e) => {
    if (e.type === 'state') {
      if (e.detail === lastState) return;
      lastState = e.detail;
    }
    note(`${e.node} ${e.type} ${e.detail}`);
  });
}

export function note(text: string): void {
  writeAllSync(2, Buffer.from(`[${((performance.now() - t0) / 1000).toFixed(3)}] ${text}\n`));
}

/**
 * Released outputs: console bytes to stdout, and every output to the side-channel file if
 * asked. Written synchronously: an output counts as released to the world only once it is
 * out of this process, and the primary tells its backup how many it released. The console
 * bytes one ack releases (a printed line) leave in one write, a microtask after the release:
 * before any batch runs, so before any progress entry can tell the backup they were released
 * (a write per byte cost the primary ~3 µs each, and the later bytes of a line waited for the
 * earlier ones' writes: docs/BENCHMARKS.md, "Output-rule delay, stage by stage").
 */
export function sinkOutputs(
  released$: Observable<ReleasedOutput>,
  log: OutputLogWriter | undefined,
  write: (bytes: Uint8Array) => void = (bytes) => writeAllSync(1, bytes),
): void {
  let bytes: number[] = [];
  const flush = (): void => {
    const out = Buffer.from(bytes);
    bytes = [];
    try {
      write(out);
    } catch (e) {
      // The reader went away (`ftvm primary ... | head`): end as SIGPIPE would, not with a stack trace.
      if ((e as NodeJS.ErrnoException).code === 'EPIPE') process.exit(141);
      throw e;
    }
  };
  released$.subscribe((o) => {
    log?.write(o);
    if (o.output.kind === 'console') {
      if (bytes.length === 0) queueMicrotask(flush);
      bytes.push(o.output.byte);
    }
  });
}

export function timingFlags(values: { 'suspect-ms'?: string | undefined; 'heartbeat-ms'?: string | undefined; 'heartbeat-link'?: boolean | undefined; 'no-heartbeat-link'?: boolean | undefined }): Partial<FtTiming> {
  // --no-heartbeat-link is the default, said explicitly (scripts that compare the two).
  if (values['heartbeat-link'] && values['no-heartbeat-link']) throw new CliError('--heartbeat-link and --no-heartbeat-link contradict each other: give one');
  const t: Partial<FtTiming> = {};
  t.suspectMs = positiveInt('suspect-ms', values['suspect-ms'], PROCESS_SUSPECT_MS);
  t.confirmMs = values['suspect-ms'] === undefined ? PROCESS_TIMING.confirmMs : Math.max(1, Math.round(t.suspectMs / 2));
  t.suspectMaxMs = Math.max(t.suspectMs, PROCESS_TIMING.suspectMaxMs);
  if (values['heartbeat-ms'] !== undefined) t.heartbeatMs = positiveInt('heartbeat-ms', values['heartbeat-ms'], 1);
  return t;
}

/**
 * The heartbeat link of a node across processes (runtime/channel/heartbeat.ts), with
 * `--heartbeat-link` (both nodes): a thread of its own that beats over UDP to the peer, so a
 * loaded host that starves the guest's thread does not make the node look dead. Its lines
 * are `ftvm:` lines. Off by default (`--no-heartbeat-link` says so explicitly): once the fault
 * proxy relayed from a process of its own, fault batches failed over spuriously 0 times
 * with the link and 0 times without it, and the link costs its thread's CPU (about 7 % of a
 * core per node at 5 ms beats); docs/BENCHMARKS.md, "Detection, fourth pass".
 */
export function heartbeatLink(values: { 'heartbeat-link'?: boolean | undefined; 'no-heartbeat-link'?: boolean | undefined }, role: BeatRole, host: string, port: number): HeartbeatLink | undefined {
  if (!values['heartbeat-link'] || values['no-heartbeat-link']) return undefined;
  return new HeartbeatLink({ role, host, port, say: (line) => writeAllSync(2, Buffer.from(`ftvm: ${role} heartbeat: ${line}\n`)) });
}

/** Stop the link, with one line of what it did (tests and bench/detect.mjs read it). */
export function closeLink(link: HeartbeatLink | undefined, who: string): void {
  if (!link) return;
  const s = link.stats();
  note(`${who} heartbeat link: beats sent ${s.sent} heard ${s.heard}`);
  link.close();
}

/** The link beats for `end` once `up` resolves (its TLS session is there), until the end closes or fails. */
export function watchBeats(link: HeartbeatLink | undefined, end: KeyedEnd & { events$: Observable<ChannelEvent> }, up: Promise<unknown>): void {
  if (!link) return;
  const down = new Promise<void>((resolve) => {
    end.events$.subscribe({
      next: (e) => { if (e.type === 'channel.failed' || e.type === 'channel.closed') resolve(); },
      error: () => resolve(),
      complete: () => resolve(),
    });
  });
  link.watch(end, up, down);
}

export const batchFlag = (values: { batch?: string | undefined }): { batch?: number } =>
  values.batch === undefined ? {} : { batch: positiveInt('batch', values.batch, 1) };

export const commonOptions = {
  'key-file': { type: 'string' },
  arbiter: { type: 'string' },
  'pair-id': { type: 'string' },
  mem: { type: 'string' },
  outputs: { type: 'string' },
  'suspect-ms': { type: 'string' },
  'heartbeat-ms': { type: 'string' },
  'heartbeat-link': { type: 'boolean' },
  'no-heartbeat-link': { type: 'boolean' },
  batch: { type: 'string' },
  // As `ftvm run` takes them (DESIGN §4): the shared disk and the service's UDP forwards.
  disk: { type: 'string' },
  net: { type: 'string', multiple: true },
  'on-live': { type: 'string' },
} as const;

/**
 * Open `--disk` and `--net` as `ftvm run` does: now for a live primary; deferred for a backup,
 * which touches neither before go-live (its disk data and packets come from the log, DESIGN §3
 * One writer per disk). A disk in use is exit 4, as for `ftvm run`.
 */
export async function openNodeIo(values: { disk?: string | undefined; net?: string[] | undefined }, deferred: boolean): Promise<OpenedIo> {
  try {
    return await openIo({ disk: values.disk, net: values.net }, deferred ? { deferDisk: {}, deferNet: true } : {});
  } catch (e) {
    if (e instanceof IoOpenError) throw new CliError(e.message, e.exitCode);
    throw e;
  }
}

/**
 * The disk this node serves, as the membership check compares it (tcp-frames.ts `refusal`): a
 * live node's read through its open backend; a backup's read without opening it (not live).
 */
export async function diskIdentityOf(diskSpec: string | undefined, io: OpenedIo): Promise<DiskIdentity | null> {
  if (diskSpec === undefined) return null;
  const spec = parseDiskSpec(diskSpec);
  const backend = io.disk?.backend;
  try {
    return backend && !io.deferred?.disk ? await openDiskIdentity(spec, backend) : await peekDiskIdentity(spec);
  } catch (e) {
    const code = (e as { exitCode?: unknown }).exitCode;
    if (code === 2) throw new CliError((e as Error).message, 2);
    throw new CliError(`--disk ${diskSpec}: cannot read its first blocks: ${(e as Error).message}`, 1);
  }
}

/** The forwards a node serves, [host port, guest port] in order: bound ones, or as named (a backup). */
export function forwardsOf(io: OpenedIo, named?: readonly string[]): [number, number][] {
  if (named !== undefined) return named.map((text) => { const f = parseNetSpec(text); return [f.hostPort, f.guestPort]; });
  return (io.udp?.forwards ?? []).map((f, i) => [io.udp!.boundPorts[i]!, f.guestPort]);
}

/**
 * A file disk removed or replaced under a live node (`rm`, a restore that renames a copy into
 * place): the node still writes to the file it opened, which no backup can open at go-live, so
 * a takeover would lose every write since. Said once, as one `ftvm:` line, when it is seen
 * (looked at every second); the node serves on (its clients' writes are still acknowledged
 * only once the backup has the log).
 */
export function watchDiskFile(diskSpec: string | undefined, disk: DiskIdentity | null): { stop(): void } {
  if (diskSpec === undefined || disk?.ino === undefined) return { stop: () => undefined };
  const spec = parseDiskSpec(diskSpec);
  if (spec.kind !== 'file') return { stop: () => undefined };
  const timer = setInterval(() => {
    let now: number | undefined;
    try {
      now = statSync(spec.path).ino;
    } catch {
      now = undefined;
    }
    if (now === disk.ino) return;
    clearInterval(timer);
    process.stderr.write(`ftvm: disk ${spec.path} was ${now === undefined ? 'removed' : 'replaced by another file'} while this node runs: it writes to a file a backup cannot open at go-live (a takeover would not have these writes); restore it, or stop the pair\n`);
  }, 1000);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

/** A live node's disk, opened first, and its ports, bound after its start hook: one OpenedIo. */
function withDisk(disk: OpenedIo, net: OpenedIo): OpenedIo {
  const both: OpenedIo = {
    ...disk,
    ...net,
    ...(disk.disk ? { disk: disk.disk } : {}),
    goLive: () => net.goLive(),
    close: async () => { await Promise.all([disk.close(), net.close()]); },
  };
  return both;
}

/** Bind `port` (TCP, or UDP) on `host` and let it go at once: the error a real bind would meet, if any. */
function tryBind(kind: 'tcp' | 'udp', host: string, port: number): Promise<NodeJS.ErrnoException | undefined> {
  return new Promise((resolve) => {
    if (kind === 'tcp') {
      const s = createServer();
      s.once('error', (e) => resolve(e));
      s.listen({ host, port, exclusive: true }, () => s.close(() => resolve(undefined)));
    } else {
      const s = createSocket(isIPv6(host) ? 'udp6' : 'udp4');
      s.once('error', (e) => { s.close(); resolve(e); });
      s.bind({ address: host, port, exclusive: true }, () => s.close(() => resolve(undefined)));
    }
  });
}

/**
 * The primary's --listen port and service ports, tried before its start hook runs: a port
 * another process holds (a second primary on it) is refused with the line the bind itself
 * gives. A service address this host does not have yet is no error here: the hook brings it.
 */
export async function probePorts(host: string, port: number, net: readonly string[]): Promise<void> {
  if (port !== 0) {
    const e = await tryBind('tcp', host, port);
    if (e) throw new CliError(`cannot listen on ${host}:${port}: ${e.message}`, 1);
  }
  for (const spec of net) {
    let f;
    try {
      f = parseNetSpec(spec);
    } catch {
      continue; // Malformed: openIo says so, in its own words.
    }
    if (f.hostPort === 0) continue;
    const e = await tryBind('udp', f.hostAddr, f.hostPort);
    if (e?.code === 'EADDRINUSE') throw new CliError(`--net: udp ${f.hostAddr}:${f.hostPort} is in use`);
    if (e?.code === 'EACCES') throw new CliError(`--net: udp port ${f.hostPort} needs privileges`);
  }
}

/**
 * The guest's disk and NIC: with their backends on a live node; a backup's machine has the same
 * devices (the disk's capacity included) and no backends until go-live attaches them.
 */
export function machineIo(io: OpenedIo): { disk?: DiskOptions; net?: NetOptions } {
  const disk = io.disk?.backend;
  if (io.deferred) {
    const net = io.deferred.net;
    return {
      ...(disk ? { disk: { sectors: disk.sectors } } : {}),
      ...(net ? { net: { onDelivered: (f: Uint8Array) => net.learn(f) } } : io.net ? { net: {} } : {}),
    };
  }
  return { ...(io.disk ? { disk: io.disk } : {}), ...(io.net ? { net: io.net } : {}) };
}

/**
 * Stop the guest's I/O at the end of a run: wait for the writes already released, flush the
 * disk (fsync, NBD_CMD_FLUSH) and close it, releasing its lock, and unbind the service ports.
 * A clean stop (SIGTERM) leaves the disk as durable as the guest's last released write.
 */
export async function closeNodeIo(machine: Machine, io: OpenedIo): Promise<void> {
  const udp = io.udp;
  if (udp) {
    const s = udp.stats;
    const why = Object.entries(s.dropReasons).map(([k, n]) => `${k}: ${n}`).join(', ');
    note(`net ${s.datagramsIn} datagrams in, ${s.datagramsOut} out, ${s.dropped} frames dropped${why ? ` (${why})` : ''}`);
  }
  const disk = machine.io?.isLive ? io.disk?.backend : undefined;
  // A backup's disk that go-live has not locked yet holds nothing of this process to flush
  // (and a flush would wait for the lock with the old primary, maybe for ever).
  if (disk && (!io.deferred?.disk || io.deferred.disk.isLocked)) {
    await machine.io!.drain();
    await disk.flush().then(() => note(`disk ${disk.name} flushed`), (e: Error) => note(`disk ${disk.name}: flush failed: ${e.message}`));
  } else {
    // Close the deferred backends first: a takeover still waiting for the old primary's lock
    // gives up, so the writes queued behind it fail instead of keeping this process.
    await io.close();
  }
  await machine.io?.close();
  await io.close();
}

/**
 * Runs `--on-live` whenever the node becomes the one that serves alone: a live node whose
 * chart enters `alone` (its backup went silent and it won the arbiter). `first` names the
 * first such entry (a backup gone live reaches `alone` by re-claiming the key it won).
 */
export function hookOnAlone(node: PrimaryNode, cmd: string | undefined, role: 'primary' | 'backup', first: LiveEvent): void {
  if (cmd === undefined) return;
  let event = first;
  let last: string | undefined;
  node.events$.subscribe((e) => {
    // Chart values only (JSON), not the state lines that say something in words.
    if (e.type !== 'state' || !/^["{]/.test(e.detail)) return;
    // The chart reports every snapshot: run on entering `alone`, not on each report while there.
    const entered = e.detail === '"alone"' && last !== '"alone"';
    last = e.detail;
    if (!entered) return;
    void runLiveHook(cmd, { pairId: node.pairId, generation: node.generation, role, event }, note);
    event = 'alone';
  });
}

/** With `--on-live` moving the service address: its ports held a moment past this process's end (on-live.ts). */
export function guardMovedPorts(onLive: string | undefined, io: OpenedIo): { release(): void } {
  const udp = io.udp;
  if (onLive === undefined || !udp || !udp.forwards.some((f) => movedAddress(f.hostAddr))) return { release: () => undefined };
  return guardServicePorts(udp.fds);
}

/** Across processes suspicion waits longer than in one thread: runtime/ft/timing.ts PROCESS_TIMING says why. */
export const PROCESS_SUSPECT_MS = PROCESS_TIMING.suspectMs;

/** How long a primary waits for its start hook before it binds anyway (a hook that hangs must not keep the service down). */
const START_HOOK_WAIT_MS = 10_000;

/**
 * `--inspect [PORT]` for primary and backup: taken out of argv (its port is optional, which
 * parseArgs cannot express); --dashboard and --pace belong to `ftvm demo`.
 */
export function takeInspectFlag(argv: string[]): { rest: string[]; inspect: number | undefined } {
  let taken;
  try {
    taken = takeViewFlags(argv);
  } catch (e) {
    throw new CliError((e as Error).message);
  }
  if (taken.flags.dashboard !== undefined || taken.flags.pace !== undefined) throw new CliError('--dashboard and --pace are for `ftvm demo`');
  return { rest: taken.rest, inspect: taken.flags.inspect };
}

/** Start the inspection relay if asked (its URL goes to stderr); the node's charts report to it. */
export async function startInspect(port: number | undefined): Promise<Views | undefined> {
  return port === undefined ? undefined : startViews({ inspect: port, dashboard: undefined }, (s) => writeAllSync(2, Buffer.from(s)));
}

const primaryOptions = { ...commonOptions, listen: { type: 'string' }, join: { type: 'string' }, 'no-reprotect': { type: 'boolean' } } as const;
const parsePrimaryArgs = (args: string[]) => parseArgs({ args, allowPositionals: true, options: primaryOptions });
type PrimaryValues = ReturnType<typeof parsePrimaryArgs>['values'];

async function primary(argv: string[]): Promise<number> {
  const { rest, inspect: inspectPort } = takeInspectFlag(argv);
  const { values, positionals } = parsePrimaryArgs(rest);
  if (values.join !== undefined) throw new CliError('--join belongs to `ftvm backup`: a new backup joins a running primary');
  const elfProblem = elfCountProblem(positionals, argv);
  if (elfProblem !== undefined) throw new CliError(elfProblem);
  const file = positionals[0]!;
  const { host, port } = parseHostPort('listen', values.listen);
  const key = loadKey(values['key-file']);
  const resumed = pairIdFlag(values['pair-id']);
  const memoryMiB = memoryFlag(values.mem);
  const timing = timingFlags(values);
  const image = readImage(file);
  // The image is checked before anything else is opened (the arbiter, the hook, the backends).
  checkImage(file, memoryMiB);
  const early = startSignals();
  try {
    return await startPrimary(early, { values, file, host, port, key, resumed, memoryMiB, timing, image, inspectPort });
  } finally {
    early.off();
  }
}

async function startPrimary(
  early: ReturnType<typeof startSignals>,
  { values, file, host, port, key, resumed, memoryMiB, timing, image, inspectPort }: {
    values: PrimaryValues; file: string; host: string; port: number; key: Buffer; resumed: string | undefined;
    memoryMiB: number; timing: Partial<FtTiming>; image: Uint8Array; inspectPort: number | undefined;
  },
): Promise<number> {
  if (values['on-live'] !== undefined) checkLiveHook(values['on-live']);
  const outputs = openOutputs(values.outputs);
  const arbiter = loadArbiter(values.arbiter);
  const identity: PairIdentity = { instance: resumed ?? newPairInstance(), imageDigest: imageDigest(image), memoryMiB };
  probeArbiter(arbiter, identity.instance);
  const onLive = values['on-live'];
  // Everything that can refuse this node is tried before its hook runs: a hook takes the
  // service address and leaves a watcher that gives it up when this process ends, so a node
  // refused after it (a second primary on the same disk or port, a missing disk file) would
  // take the address away from the live one. The disk does not need the address: it is opened
  // and locked now (DESIGN §3 one writer per disk); the ports are tried, and bound after it.
  // (Without a hook nothing runs before the real binds, which say the same.)
  let diskIo: OpenedIo | undefined;
  let diskId: DiskIdentity | null;
  try {
    diskIo = await unlessStopped(early, openNodeIo({ disk: values.disk }, false));
    if (diskIo === undefined) {
      await arbiter.close();
      return stoppedAtStart('primary', early.by!);
    }
    diskId = await diskIdentityOf(values.disk, diskIo);
    if (onLive !== undefined) {
      await probePorts(host, port, values.net ?? []);
      if (inspectPort !== undefined) await checkPortFree('--inspect', inspectPort);
    }
  } catch (e) {
    await diskIo?.close();
    await arbiter.close();
    throw e;
  }
  // The primary serves from its start, as keepalived's MASTER does: its hook runs first and is
  // waited for, so it can bring up the service address the forwards bind; no guest runs yet.
  if (onLive !== undefined) {
    const hook = runLiveHook(onLive, { pairId: identity.instance, generation: 1, role: 'primary', event: 'start', stopping: () => early.by }, note);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((r) => { timer = setTimeout(() => r('late'), START_HOOK_WAIT_MS); });
    // NOTE a stop signal does not cut this wait short: the hook ends first (at most this long),
    // so that its watcher sees this process end after it and gives the address up.
    if ((await Promise.race([hook, late])) === 'late') process.stderr.write(`ftvm: on-live start: hook still running after ${START_HOOK_WAIT_MS} ms; starting without waiting for it\n`);
    clearTimeout(timer);
  }
  if (early.by) {
    await diskIo.close();
    await arbiter.close();
    return stoppedAtStart('primary', early.by);
  }
  let io: OpenedIo;
  try {
    const netIo = await unlessStopped(early, openNodeIo({ net: values.net }, false));
    if (netIo === undefined) {
      await diskIo.close();
      await arbiter.close();
      return stoppedAtStart('primary', early.by!);
    }
    io = withDisk(diskIo, netIo);
  } catch (e) {
    await diskIo.close();
    await arbiter.close();
    throw e;
  }
  // Where clients reach the guest: a rule for port 0 gets its port from the host.
  for (const line of io.udp?.describe() ?? []) note(`primary ${line}`);
  // What a backup must name to be admitted (DESIGN §3 Membership): this disk, these forwards.
  identity.io = { disk: diskId, net: forwardsOf(io), ...(onLive !== undefined ? { onLive: true } : {}) };
  let machine: Machine;
  try {
    machine = bootMachine(image, file, memoryMiB, machineIo(io));
  } catch (e) {
    await io.close();
    await arbiter.close();
    throw e;
  }
  const views = await startInspect(inspectPort);
  const guard = guardMovedPorts(values['on-live'], io);
  const watch = watchDiskFile(values.disk, diskId);
  try {
    return await runPrimary(views, { host, port, key, arbiter, identity, timing, machine, outputs, values, early });
  } finally {
    watch.stop();
    guard.release();
    await closeNodeIo(machine, io);
    await views?.close();
  }
}

async function runPrimary(
  views: Views | undefined,
  { host, port, key, arbiter, identity, timing, machine, outputs, values, early }: {
    host: string; port: number; key: Buffer; arbiter: Arbiter; identity: PairIdentity; timing: Partial<FtTiming>; machine: Machine;
    outputs: OutputLogWriter | undefined; values: { batch?: string | undefined; 'no-reprotect'?: boolean | undefined; 'on-live'?: string | undefined; 'heartbeat-link'?: boolean | undefined; 'no-heartbeat-link'?: boolean | undefined };
    /** Stop signals since the start; handed over to the node's own once the guest runs. */
    early: ReturnType<typeof startSignals>;
  },
): Promise<number> {
  const pairId = identity.instance;
  let listener;
  try {
    // Each backup's end runs the channel chart; --inspect and the dashboard see it.
    listener = await listenPrimary({ host, port, key, identity, chart: { id: 'primary.channel', ...(views?.inspect ? { inspect: views.inspect as never } : {}) } });
  } catch (e) {
    await arbiter.close();
    throw new CliError(`cannot listen on ${host}:${port}: ${(e as Error).message}`, 1);
  }
  // Strays, wrong keys, other pairs' or images' backups: each refused, listening goes on.
  listener.refused$.subscribe((why) => note(`primary refused ${why}`));
  // Until its backup attaches the guest has not run: a stop signal has nothing to lose.
  // Caught (since the start: `early`) before the line below tells anyone this process is there.
  const stopped = early.stopped;
  // The `pair` command and the fault harness read this line to learn the port and the instance;
  // an operator, the pid to stop (`npx ftvm` runs this node as a child of npm's process).
  note(`primary listening ${host}:${listener.port} pair ${pairId} pid ${process.pid}`);
  listener.end.events$.subscribe((e) => note(`primary channel ${e.type}${e.type === 'channel.failed' ? ` ${e.error.message}` : e.type === 'channel.closed' ? ` by ${e.by}` : ''}`));
  const link = heartbeatLink(values, 'primary', host, listener.port);
  watchBeats(link, listener.end, listener.end.attached);
  try {
    if ((await Promise.race([listener.end.attached, stopped])) === 'stopped') {
      note('primary stopped before a backup attached: the guest never ran');
      link?.close();
      await listener.close();
      await arbiter.close();
      return 0;
    }
  } catch (e) {
    link?.close();
    await listener.close();
    throw new CliError(`no backup: ${(e as Error).message}`, 1);
  } finally {
    early.off();
  }
  note(`primary backup attached from ${listener.end.peer}`);

  const node = new PrimaryNode({ name: 'primary', pairId, generation: 1, machine, arbiter, channel: listener.end, timing, ...batchFlag(values), ...(views?.inspect ? { inspect: views.inspect } : {}) });
  reportEvents(node.events$);
  sinkOutputs(node.released$, outputs);
  hookOnAlone(node, values['on-live'], 'primary', 'alone');
  if (!values['no-reprotect']) serveReprotection(node, listener, link);
  const stop = stopOnSignal(node);
  const outcome = await node.run();
  stop.off();
  closeLink(link, 'primary');
  await listener.close().catch(() => undefined);
  await arbiter.close();
  const s = node.stats();
  note(`primary stats outputs ${s.outputs} released ${s.released} entries ${s.entriesSent} bytes ${listener.end.stats().bytesSent} chunks ${listener.end.chunksSent()} (first backup) outputDelay p50 ${s.outputDelay.p50Ms.toFixed(3)} ms p99 ${s.outputDelay.p99Ms.toFixed(3)} ms icount ${s.icount} acks ${s.acks} chartEvents ${s.chartEvents} batches ${s.batches} clockedSends ${s.clockedSends}`);
  if (stop.by) return signalExit('primary', stop);
  // A primary that lost the arbiter halts even if its guest powered off meanwhile: the
  // other replica is the one that finishes the guest's outputs.
  if (node.state === 'halted') return EXIT_HALTED;
  if (outcome.reason === 'halt') return (outcome.code ?? 0) & 0xff;
  if (outcome.reason === 'fault') return 1;
  // Stopped: it lost the arbiter (the backup is live) or was told to stop.
  return EXIT_HALTED;
}

/**
 * Re-protection across processes (DESIGN §3): whenever `node` runs alone (its backup died and
 * it won the arbiter, or it is a backup gone live), the listener takes the next backup that
 * connects with `ftvm backup --join`. That connection first gets a hello with the node's
 * current generation, the one the joiner claims if this node goes silent (an older replica
 * can only claim an older one, so it never wins again), and the memory size. Then the node
 * sends a snapshot between two batches: the guest stops only for that copy (machine state,
 * compression, framing; reported as `paused`), the rest streams while it runs. Outputs wait
 * for the joiner's ack of the snapshot, as for any entry; the pair is protected from then.
 */
export function serveReprotection(node: PrimaryNode, listener: TcpBackupListener, link?: HeartbeatLink): void {
  let current: TcpPrimaryEnd | undefined;
  let joined: { at: number; bytes: number } | undefined;
  let over = false;
  const offer = (): void => {
    if (over || current || node.state !== 'alone') return;
    let end: TcpPrimaryEnd;
    try {
      end = listener.accept({ generation: node.generation });
    } catch {
      // The backup this node just gave up is still closing its end: offer again shortly.
      setTimeout(offer, 50);
      return;
    }
    current = end;
    watchBeats(link, end, end.attached);
    note(`${node.name} alone: a new backup may join on port ${listener.port} (generation ${node.generation})`);
    end.events$.subscribe((e) => {
      if (e.type === 'channel.failed' || e.type === 'channel.closed') {
        if (e.type === 'channel.failed') note(`${node.name} joined backup channel failed: ${e.error.message}`);
        if (current === end) current = undefined;
        joined = undefined;
        // Back to `alone` (or still there if the joiner never finished its handshake).
        queueMicrotask(offer);
      }
    });
    end.attached.then(() => {
      if (over || node.state !== 'alone') {
        end.close();
        return;
      }
      const t = performance.now();
      node.attachBackup(end);
      const pausedMs = performance.now() - t;
      joined = { at: t, bytes: end.stats().bytesSent };
      note(`${node.name} backup joining from ${end.peer}: snapshot ${end.stats().bytesSent} bytes at icount ${node.machine.icount}, guest paused ${pausedMs.toFixed(1)} ms for the copy`);
    }, () => undefined);
  };
  node.events$.subscribe({
    next: (e) => {
      if (e.type !== 'state') return;
      if (e.detail === '"alone"') offer();
      else if (joined && e.detail.includes('"protected"')) {
        note(`${node.name} re-protected: join to protected in ${(performance.now() - joined.at).toFixed(1)} ms (${joined.bytes} bytes)`);
        joined = undefined;
      }
    },
    complete: () => {
      over = true;
      current?.close();
    },
  });
  // A node that is already alone when this is called (events report changes only).
  queueMicrotask(offer);
}

/** Wraps a command body: expected errors become one `ftvm: ...` line and an exit code. */
export function cliRun(usage: string, body: (argv: string[]) => Promise<number>): (argv: string[]) => Promise<number> {
  return async (argv) => {
    // The run is over: a socket to a lost host or a gRPC channel (an arbiter opened before a
    // later check failed, too) must not keep the process, and a supervisor waiting for it, alive.
    const exitSoon = (code: number): number => {
      setTimeout(() => process.exit(code), 2000).unref();
      return code;
    };
    try {
      return exitSoon(await body(argv));
    } catch (e) {
      if (e instanceof CliError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
        // Only a usage error (exit 2) earns the usage line; a refusal or an outage does not.
        process.stderr.write(`ftvm: ${errorLine(e)}\n${((e as CliError).exitCode ?? 2) === 2 ? `usage: ftvm ${usage}\n` : ''}`);
        return exitSoon((e as CliError).exitCode ?? 2);
      }
      throw e;
    }
  };
}

export const command: Command = {
  usage: USAGE,
  summary: 'run the primary of a pair across processes: listen for the backup, log to it over TLS-PSK',
  run: cliRun(USAGE, primary),
};
