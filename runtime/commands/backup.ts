// `ftvm backup`: the backup of a pair across processes or hosts. It connects to its primary,
// replays the log in lockstep and prints nothing of the guest's; when the primary dies and
// this side wins the arbiter, it goes live in this process and prints the console output
// from then on (re-issuing what the primary may not have released, DESIGN §3).

import { parseArgs } from 'node:util';
import type { Command } from '../cli.js';
import { hostname } from 'node:os';
import { Machine } from '../machine.js';
import { LiveEnv } from '../env/live.js';
import { connectBackup, listenForBackups } from '../channel/tcp.js';
import { connectBackupThreaded, SOCKET_THREAD_CHAIN_MS } from '../channel/socket-thread.js';
import { BackupNode } from '../ft/backup-node.js';
import { CliError, imageDigest, memoryFlag, positiveInt, readImage, elfCountProblem } from './common.js';
import {
  batchFlag, bootMachine, cliRun, closeNodeIo, commonOptions, EXIT_DIVERGED, EXIT_HALTED, EXIT_REFUSED, guardMovedPorts, hookOnAlone, loadArbiter, loadKey, probeArbiter,
  diskIdentityOf, forwardsOf, heartbeatLink, machineIo, note, openNodeIo, openOutputs, pairIdFlag, parseHostPort, reportEvents, serveReprotection, signalExit, sinkOutputs, startInspect, startSignals, stopOnSignal, stoppedAtStart, unlessStopped, takeInspectFlag,
  closeLink, timingFlags, watchBeats,
} from './primary.js';
import type { Views } from '../dashboard/cli.js';
import type { OpenedIo } from '../io/open.js';
import { parseNetSpec } from '../io/spec.js';
import { checkLiveHook } from './on-live.js';
import type { IoIdentity } from '../channel/tcp-frames.js';

const USAGE = 'backup <elf> (--connect HOST:PORT | --join HOST:PORT) --key-file F --arbiter SPEC [--pair-id ID] [--mem MiB] [--outputs FILE] [--connect-timeout-ms N] [--listen HOST:PORT] [--name NAME] [--heartbeat-link] [--socket-thread on|off] [--inspect [PORT]]\n' +
  '      [--disk file:PATH|nbd://HOST:PORT/EXPORT] [--net udp:[ADDR:]HOSTPORT:GUESTPORT]... [--on-live CMD]';

async function backup(argv: string[]): Promise<number> {
  const { rest, inspect: inspectPort } = takeInspectFlag(argv);
  let views: Views | undefined;
  try {
    return await backupWith(rest, inspectPort, (v) => { views = v; }, argv);
  } finally {
    await views?.close();
  }
}

const backupOptions = {
  ...commonOptions, connect: { type: 'string' }, join: { type: 'string' }, listen: { type: 'string' }, name: { type: 'string' },
  'connect-timeout-ms': { type: 'string' },
  'socket-thread': { type: 'string' },
} as const;
const parseBackupArgs = (args: string[]) => parseArgs({ args, allowPositionals: true, options: backupOptions });
type BackupValues = ReturnType<typeof parseBackupArgs>['values'];

async function backupWith(argv: string[], inspectPort: number | undefined, started: (v: Views | undefined) => void, given: readonly string[]): Promise<number> {
  const { values, positionals } = parseBackupArgs(argv);
  const elfProblem = elfCountProblem(positionals, given);
  if (elfProblem !== undefined) throw new CliError(elfProblem);
  if (values.join !== undefined && values.connect !== undefined) throw new CliError('--connect (boot with a new primary) or --join (join a running one), not both');
  const file = positionals[0]!;
  // Off by default: on a loaded host its extra thread hops lengthened the output rule's wait,
  // and the thread's start delays the connect (docs/BENCHMARKS.md "Backup socket thread").
  const socketThread = values['socket-thread'] ?? 'off';
  if (socketThread !== 'on' && socketThread !== 'off') throw new CliError(`--socket-thread ${socketThread}: 'on' or 'off'`);
  const joining = values.join !== undefined;
  const { host, port } = joining ? parseHostPort('join', values.join) : parseHostPort('connect', values.connect);
  // Where to take a backup of our own once live (re-protection); validated before anything runs.
  const listenAt = values.listen === undefined ? undefined : parseHostPort('listen', values.listen);
  const key = loadKey(values['key-file']);
  const expected = pairIdFlag(values['pair-id']);
  const memoryMiB = memoryFlag(values.mem);
  const connectTimeoutMs = positiveInt('connect-timeout-ms', values['connect-timeout-ms'], 10_000);
  const timing = timingFlags(values);
  const image = readImage(file);
  // The service moves to this replica at go-live: on the port its clients already use.
  for (const spec of values.net ?? []) {
    let port;
    try {
      port = parseNetSpec(spec).hostPort;
    } catch (e) {
      throw new CliError((e as Error).message);
    }
    if (port === 0) throw new CliError(`--net ${spec}: a backup binds its service port at go-live; name the port the primary bound, not 0`);
  }
  if (values['on-live'] !== undefined) checkLiveHook(values['on-live']);
  // The arbiter knows a claimant by name and says 'won' again to the same name: every joiner
  // needs its own, or two of them could both win one generation.
  const name = values.name ?? (joining ? `backup-${hostname()}-${process.pid}` : 'backup');
  // Booting replays from instruction 0 of the image; joining restores the primary's snapshot
  // into a blank machine of the same size. Either way the image names the pair's guest.
  // Deferred: opened only at go-live (the shared disk's size is read now: the guest sees it).
  // A stop signal from here until the node's own handlers are set: it stops before it runs.
  const early = startSignals();
  try {
    return await startBackup(early, { values, file, name, joining, host, port, key, expected, memoryMiB, connectTimeoutMs, timing, image, listenAt, inspectPort, socketThread, started });
  } finally {
    early.off();
  }
}

async function startBackup(
  early: ReturnType<typeof startSignals>,
  { values, file, name, joining, host, port, key, expected, memoryMiB, connectTimeoutMs, timing, image, listenAt, inspectPort, socketThread, started }: {
    values: BackupValues; file: string; name: string; joining: boolean; host: string; port: number; key: Buffer; expected: string | undefined;
    memoryMiB: number; connectTimeoutMs: number; timing: ReturnType<typeof timingFlags>; image: Uint8Array;
    listenAt: { host: string; port: number } | undefined; inspectPort: number | undefined; socketThread: string;
    started: (v: Views | undefined) => void;
  },
): Promise<number> {
  const io = await unlessStopped(early, openNodeIo(values, true));
  if (io === undefined) return stoppedAtStart('backup', early.by!);
  // What the primary checks before it admits this backup: the disk and the forwards it will
  // take over at go-live must be the pair's (read now, without opening or locking the disk).
  let ioIdentity: IoIdentity;
  try {
    ioIdentity = { disk: await diskIdentityOf(values.disk, io), net: forwardsOf(io, values.net ?? []), ...(values['on-live'] !== undefined ? { onLive: true } : {}) };
  } catch (e) {
    await io.close();
    throw e;
  }
  if (early.by) {
    await io.close();
    return stoppedAtStart('backup', early.by);
  }
  let machine: Machine;
  try {
    machine = joining ? new Machine({ memoryMiB, env: new LiveEnv(), ...machineIo(io) }) : bootMachine(image, file, memoryMiB, machineIo(io));
  } catch (e) {
    await io.close();
    throw e;
  }
  let guard: { release(): void } | undefined;
  try {
    return await runBackup({ ioIdentity, values, image, file, name, joining, host, port, key, expected, memoryMiB, connectTimeoutMs, timing, machine, io, listenAt, inspectPort, started, socketThread: socketThread === 'on', guarded: (g) => { guard = g; }, early });
  } finally {
    guard?.release();
    await closeNodeIo(machine, io);
  }
}

async function runBackup({ ioIdentity, values, image, name, joining, host, port, key, expected, memoryMiB, connectTimeoutMs, timing, machine, io, listenAt, inspectPort, started, socketThread, guarded, early }: {
  ioIdentity: IoIdentity;
  values: { outputs?: string | undefined; arbiter?: string | undefined; batch?: string | undefined; 'on-live'?: string | undefined; 'heartbeat-link'?: boolean | undefined };
  image: Uint8Array; file: string; name: string; joining: boolean; host: string; port: number; key: Buffer; expected: string | undefined;
  memoryMiB: number; connectTimeoutMs: number; timing: ReturnType<typeof timingFlags>; machine: Machine; io: OpenedIo;
  listenAt: { host: string; port: number } | undefined; inspectPort: number | undefined; started: (v: Views | undefined) => void;
  /** The channel's socket in a thread of its own (socket-thread.ts), so replay reads it between batches. */
  socketThread: boolean;
  guarded: (guard: { release(): void }) => void;
  /** Stop signals since the start; handed over to the node's own (stopOnSignal) before it runs. */
  early: ReturnType<typeof startSignals>;
}): Promise<number> {
  const outputs = openOutputs(values.outputs);
  const arbiter = loadArbiter(values.arbiter);
  probeArbiter(arbiter, expected ?? 'start-probe');
  const views = await startInspect(inspectPort);
  started(views);
  if (early.by) {
    await arbiter.close();
    return stoppedAtStart('backup', early.by);
  }

  const channelOpts = {
    host, port, key, connectTimeoutMs, join: joining, member: { instance: expected ?? '', imageDigest: imageDigest(image), memoryMiB, io: ioIdentity },
    chart: { id: `${name}.channel`, ...(views?.inspect ? { inspect: views.inspect as never } : {}) },
  };
  const end = socketThread ? connectBackupThreaded(channelOpts) : connectBackup(channelOpts);
  // Beats to the primary's channel address (UDP, the same port number) and from it.
  const link = heartbeatLink(values, 'backup', host, port);
  watchBeats(link, end, end.opened);
  end.events$.subscribe((e) => note(`backup channel ${e.type}${e.type === 'channel.failed' ? ` ${e.error.message}` : e.type === 'channel.closed' ? ` by ${e.by}` : ''}`));
  // The `pair` command and the fault harness read this line (the instance and, joining, the name).
  end.admission.then((a) => note(`backup ${joining ? 'joined' : 'connected to'} ${host}:${port} pair ${a.instance}${joining ? ` as ${name}, generation ${a.generation}` : ''} pid ${process.pid}`), () => undefined);

  // Membership is the backup chart's: a refused backup never runs the guest, never claims.
  const deferred = io.deferred;
  const node = new BackupNode({
    name, machine, channel: end, arbiter, timing, joining, ...batchFlag(values),
    // Arrivals are polled between replay slices (no turn needed): slices chain for a millisecond.
    ...(socketThread ? { chainMs: SOCKET_THREAD_CHAIN_MS } : {}), ...(views?.inspect ? { inspect: views.inspect } : {}),
    ...(deferred ? { io: { ...(deferred.disk ? { disk: deferred.disk } : {}), ...(deferred.net ? { net: deferred.net } : {}) } } : {}),
  });
  reportEvents(node.events$);
  early.off();
  const stopBackup = stopOnSignal(node);
  const outcome = await node.run();
  stopBackup.off();
  // Its primary is gone, or the run is over: a live node beats to its own next backups.
  closeLink(link, 'backup');
  if (outcome.reason !== 'live') await arbiter.close();
  if (stopBackup.by) return signalExit(`backup (${JSON.stringify(node.state)})`, stopBackup);
  switch (outcome.reason) {
    case 'live': {
      const live = outcome.primary;
      reportEvents(live.events$);
      sinkOutputs(live.released$, outputs);
      // Where the takeover's time went (issue 13), said once the first new answer can leave.
      const phases = node.phases;
      const firstNew = node.stats().outputs;
      const phase = (step: string): void => {
        if (phases.has(step)) return;
        phases.mark(step);
        if (phases.has('first new answer released') && (!deferred || phases.has('backends open'))) note(`backup ${phases.line()}`);
      };
      const firstAnswer = live.released$.subscribe((o) => {
        if (o.output.kind === 'net' && o.index >= firstNew) {
          phase('first new answer released');
          firstAnswer.unsubscribe();
        }
      });
      // The backends now (DESIGN §3 go-live): the disk lock, the service ports, each waiting
      // while the old primary still holds it. The guest runs meanwhile; its I/O waits.
      if (deferred) {
        const t = performance.now();
        // The same opens goLive starts (claim and open are started once): each one's moment.
        void deferred.disk?.claim().then(() => phases.mark('disk locked'), () => undefined);
        void deferred.net?.open().then(() => phases.mark('ports bound'), () => undefined);
        io.goLive().then(
          (lines) => {
            phase('backends open');
            note(`backup took over ${[deferred.disk ? `disk ${deferred.disk.name}` : '', deferred.net ? 'the service ports' : ''].filter(Boolean).join(' and ')} in ${(performance.now() - t).toFixed(1)} ms`);
            for (const line of lines) note(`backup ${line}`);
            guarded(guardMovedPorts(values['on-live'], io));
            // Replies re-issued at go-live reach the clients the old primary mapped (deferred-net.ts).
            if (deferred.net) note(`backup knew ${deferred.net.nat.learned} client mappings from the log${deferred.net.nat.imported > 0 ? ` and ${deferred.net.nat.imported} from the join snapshot` : ''}; sent ${deferred.net.sentAfterOpen} replies held until the ports were bound`);
          },
          // The disk is gone (removed meanwhile, an I/O error): the guest runs on, its disk I/O
          // fails (a write is never acknowledged), and the operator hears it as an error.
          // (Closed: this node is stopping before the old primary let go; nothing to say.)
          (e: Error) => {
            if (!/: closed$/.test(e.message)) process.stderr.write(`ftvm: backup live without its disk: ${e.message}; the guest's disk I/O fails\n`);
          },
        );
      }
      hookOnAlone(live, values['on-live'], 'backup', 'go-live');
      let listener;
      let liveLink: ReturnType<typeof heartbeatLink>;
      if (listenAt) {
        try {
          listener = await listenForBackups({ ...listenAt, key, identity: { instance: node.pair, imageDigest: imageDigest(image), memoryMiB, io: ioIdentity } });
          listener.refused$.subscribe((why) => note(`${name} refused ${why}`));
          // The `pair` command and tests read this line to learn the port.
          note(`backup listening ${listenAt.host}:${listener.port} pair ${node.pair}`);
          liveLink = heartbeatLink(values, 'primary', listenAt.host, listener.port);
          serveReprotection(live, listener, liveLink);
        } catch (e) {
          note(`backup cannot listen on ${listenAt.host}:${listenAt.port}: ${(e as Error).message}; running unprotected`);
        }
      }
      const stop = stopOnSignal(live);
      const run = await live.run();
      stop.off();
      closeLink(liveLink, 'backup (live)');
      await listener?.close().catch(() => undefined);
      await arbiter.close();
      const s = live.stats();
      note(`backup stats outputs ${s.outputs} released ${s.released} icount ${s.icount}`);
      if (stop.by) return signalExit('backup (live)', stop);
      if (live.state === 'halted') return EXIT_HALTED;
      if (run.reason === 'halt') return (run.code ?? 0) & 0xff;
      return run.reason === 'fault' ? 1 : EXIT_HALTED;
    }
    case 'finished':
      return outcome.code & 0xff;
    case 'diverged':
      note(`backup diverged: ${outcome.detail}`);
      return EXIT_DIVERGED;
    case 'refused':
      throw new CliError(`refused: ${outcome.detail}`, EXIT_REFUSED);
    case 'unattached':
      throw new CliError(`no primary: ${outcome.detail}`, 1);
    default:
      note(`backup ${outcome.reason}: ${outcome.detail}`);
      return EXIT_HALTED;
  }
}

export const command: Command = {
  usage: USAGE,
  summary: 'run the backup of a pair across processes: replay the primary\'s log, go live if it dies',
  run: cliRun(USAGE, backup),
};
