// The backup replica in its own thread (the entry module of the worker remote-backup.ts
// starts). VMware FT runs the backup on another host; on one machine the nearest thing is the
// other core, so the primary keeps its own core and FT costs little (DESIGN §7: >= 0.95).
//
// The worker builds its own Machine from the image and runs a BackupNode over the port
// channel. The arbiter stays in the main thread, because one arbiter object must decide
// between both replicas: test-and-set and holder travel as messages. If the backup goes live,
// the promoted PrimaryNode keeps running here, and its released outputs go to the main
// thread, which hands them to the outside world.
//
// A pair with a disk and a network (issue 13): backends cannot cross threads, so the worker
// gets their specs and opens its own at go-live, as `ftvm backup` does in another process
// (DeferredDisk, DeferredNet): but only once the main thread says its primary has let go of
// them, since the image lock cannot tell two threads of one process apart.

import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { Machine } from '../machine.js';
import { LiveEnv } from '../env/live.js';
import { createPortBackup } from '../channel/port.js';
import { ArbiterUnavailableError, type Arbiter, type ClaimResult } from '../arbiter/arbiter.js';
import { BackupNode } from './backup-node.js';
import type { NodeEvent, PrimaryNode } from './primary-node.js';
import type { ReleasedOutput } from './output-gate.js';
import type { ToMain, ToWorker, WorkerInit, WorkerOutcome } from './remote-backup.js';
import type { DiskBackend } from '../io/backend.js';
import { DeferredDisk } from '../io/deferred-disk.js';
import { DeferredNet } from '../io/deferred-net.js';
import { parseDiskSpec } from '../io/spec.js';

const init = workerData as WorkerInit;
/**
 * Replay slices chain without an event-loop turn for this long (ms): timers (the ack hold,
 * suspicion, stats) and the control port wait at most this much plus a slice.
 */
const REPLAY_CHAIN_MS = 1;
const control = parentPort!;

// Messages leave in order, coalesced per tick: a burst of released console bytes is one post.
let outbox: ToMain[] = [];
const send = (m: ToMain): void => {
  if (outbox.length === 0) queueMicrotask(flush);
  outbox.push(m);
};
function flush(): void {
  if (outbox.length === 0) return;
  const batch = outbox;
  outbox = [];
  control.postMessage(batch);
}

/** The pair's arbiter, reached through the main thread. */
class ProxyArbiter implements Arbiter {
  private nextId = 0;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  answer(m: Extract<ToWorker, { t: 'arbiter-reply' }>): void {
    const w = this.waiting.get(m.id);
    if (!w) return;
    this.waiting.delete(m.id);
    if (m.ok) w.resolve(m.value);
    else w.reject(m.unavailable ? new ArbiterUnavailableError(m.message) : new Error(m.message));
  }

  private ask(op: 'testAndSet' | 'holder', pairId: string, generation: number, claimant?: string): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      send({ t: 'arbiter', id, op, pairId, generation, ...(claimant === undefined ? {} : { claimant }) });
    });
  }

  testAndSet(pairId: string, generation: number, claimant: string): Promise<ClaimResult> {
    return this.ask('testAndSet', pairId, generation, claimant) as Promise<ClaimResult>;
  }

  holder(pairId: string, generation: number): Promise<string | undefined> {
    return this.ask('holder', pairId, generation) as Promise<string | undefined>;
  }

  async close(): Promise<void> {}
}

/** The deferred disk behind a gate: no request reaches it before the main thread let go. */
class AfterRelease implements DiskBackend {
  readonly name: string;
  readonly sectors: number;
  constructor(private readonly disk: DeferredDisk, private readonly released: Promise<void>) {
    this.name = disk.name;
    this.sectors = disk.sectors;
  }
  async read(sector: number, count: number): Promise<Uint8Array> {
    await this.released;
    return this.disk.read(sector, count);
  }
  async write(sector: number, data: Uint8Array): Promise<void> {
    await this.released;
    return this.disk.write(sector, data);
  }
  async flush(): Promise<void> {
    await this.released;
    return this.disk.flush();
  }
  close(): Promise<void> {
    return this.disk.close();
  }
}

let letGo!: () => void;
const ioReleased = new Promise<void>((r) => { letGo = r; });
const report = (line: string): void => send({ t: 'event', e: { node: init.name, type: 'state', detail: line } });
const deferredDisk = init.io?.disk ? new DeferredDisk(parseDiskSpec(init.io.disk.spec), { sectors: init.io.disk.sectors, report }) : undefined;
const deferredNet = init.io?.net ? new DeferredNet(init.io.net, { report }) : undefined;
const disk = deferredDisk ? new AfterRelease(deferredDisk, ioReleased) : undefined;


const arbiter = new ProxyArbiter();
const machine = new Machine({
  memoryMiB: init.memoryMiB,
  env: new LiveEnv(),
  ...(disk ? { disk: { sectors: disk.sectors } } : {}),
  // The replay teaches the NAT the clients the primary's forwards mapped (deferred-net.ts).
  ...(deferredNet ? { net: { onDelivered: (f: Uint8Array) => deferredNet.learn(f) } } : {}),
});
machine.loadElf(init.image);
const logPort = init.logPort as MessagePort;
const channel = createPortBackup(logPort, { ...init.channel, ownsPort: true });
const node = new BackupNode({
  name: init.name,
  pairId: init.pairId,
  generation: init.generation,
  machine,
  channel: channel.backup,
  arbiter,
  ...(init.timing ? { timing: init.timing } : {}),
  ...(init.batch === undefined ? {} : { batch: init.batch }),
  // The log port is polled between replay batches (port.ts, pollBetweenBatches): entries are
  // received and acked there, so slices chain without a turn each (a turn per 40 µs slice cost
  // the replay about a quarter more CPU than the guest alone: docs/BENCHMARKS.md).
  chainMs: REPLAY_CHAIN_MS,
  ...(disk || deferredNet ? { io: { ...(disk ? { disk } : {}), ...(deferredNet ? { net: deferredNet } : {}) } } : {}),
});
// A chart reports its state after every event it takes, one per log arrival, mostly the same
// state again: only a change crosses to the main thread, whose turn it would otherwise cost
// (that thread runs the primary).
let lastState = '';
const forward = (e: NodeEvent): void => {
  if (e.type === 'state') {
    const line = `${e.node} ${e.detail}`;
    if (line === lastState) return;
    lastState = line;
  }
  send({ t: 'event', e });
};
node.events$.subscribe(forward);

// The takeover's steps, said in one line once the new primary's first answer can leave.
const phases = node.phases;
let phasesSaid = false;
const markPhase = (step: string): void => {
  phases.mark(step);
  if (phasesSaid || !phases.has('first new answer released') || (deferredNet && !phases.has('ports bound'))) return;
  phasesSaid = true;
  report(phases.line());
};

let promoted: PrimaryNode | undefined;
const postStats = (): void => {
  if (promoted) send({ t: 'stats', primary: promoted.stats(), generation: promoted.generation });
  else send({ t: 'stats', backup: node.stats() });
};
// A snapshot every 100 ms answers pair.stats() in the main thread without a round trip.
const statsTimer = setInterval(postStats, 100);

async function main(): Promise<WorkerOutcome> {
  const outcome = await node.run();
  if (outcome.reason !== 'live') {
    return outcome.reason === 'finished' ? { reason: 'finished', code: outcome.code } : { reason: outcome.reason, detail: outcome.detail };
  }
  const primary = outcome.primary;
  promoted = primary;
  primary.events$.subscribe(forward);
  const firstNew = node.stats().outputs;
  primary.released$.subscribe((o: ReleasedOutput) => {
    send({ t: 'released', o });
    if (o.output.kind === 'net') {
      markPhase('first net release');
      if (o.index >= firstNew) markPhase('first new answer released');
    }
  });
  send({ t: 'live', icount: machine.icount });
  postStats();
  if (deferredDisk || deferredNet) {
    // The backends once the main thread's primary let go: the lock, then the service ports.
    const t = performance.now();
    void ioReleased.then(() => {
      markPhase('io released');
      return Promise.all([
        deferredDisk?.claim().then(() => markPhase('disk locked')),
        deferredNet?.open().then(() => markPhase('ports bound')),
      ]);
    }).then(
      () => report(`took over ${[deferredDisk ? `disk ${deferredDisk.name}` : '', deferredNet ? 'the service ports' : ''].filter(Boolean).join(' and ')} in ${(performance.now() - t).toFixed(1)} ms`),
      (e: Error) => report(`cannot take over its backends: ${e.message}`),
    );
  }
  const run = await primary.run();
  // Every released write on the disk, the ports unbound: as a process's clean stop does.
  await machine.io?.close();
  return { reason: 'live', icount: machine.icount, run };
}

control.on('message', (m: ToWorker) => {
  if (m.t === 'arbiter-reply') arbiter.answer(m);
  else if (m.t === 'io-released') letGo();
  else if (m.t === 'start') {
    main().then(
      (outcome) => {
        postStats();
        send({ t: 'done', outcome });
        flush();
        clearInterval(statsTimer);
        channel.dispose();
        // The main thread terminates this worker once it has the outcome.
      },
      (err: unknown) => {
        send({ t: 'failed', message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
        flush();
        clearInterval(statsTimer);
      },
    );
  }
});
send({ t: 'ready' });
