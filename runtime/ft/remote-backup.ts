// The main thread's handle on a backup replica that runs in a worker thread
// (backup-worker.ts). It owns the primary's end of the logging channel to that worker,
// answers the worker's arbiter questions with the pair's one arbiter, and turns the worker's
// messages back into what an in-thread BackupNode offers: events, stats, and, after go-live,
// the released outputs of the promoted primary.
//
// Where the worker's code comes from: from dist/ (benches, the CLI) the worker runs
// backup-worker.js directly. Under vitest this module is TypeScript, which vitest transforms
// but a Worker cannot load: Node 20 has no type stripping and tsx is not installed. Rather
// than make the tests build first (a build racing other builds of the same tree, and a worker
// running stale code beside fresh tests), the worker then registers a small loader hook that
// compiles each .ts module on its own, without type checks (oxc from vitest's rolldown, or the
// TypeScript compiler of devDependencies), and maps the sources' `./x.js` specifiers to
// `./x.ts`. Nothing new to install; it costs the worker some startup, and only from sources.

import { MessageChannel, Worker, type WorkerOptions } from 'node:worker_threads';
import { Subject, type Observable } from 'rxjs';
import { ArbiterUnavailableError, type Arbiter } from '../arbiter/arbiter.js';
import { createPortPrimary, type PortChannelOptions, type PortPrimaryChannel } from '../channel/port.js';
import type { RunOutcome } from '../runner.js';
import type { ReleasedOutput } from './output-gate.js';
import type { NodeEvent, PrimaryStats } from './primary-node.js';
import type { BackupStats } from './backup-node.js';
import type { FtTiming } from './timing.js';
import { DEFAULT_MEMORY_MIB } from '../platform.js';
import type { UdpForward } from '../io/net-udp.js';

/** What the worker is started with (workerData). */
export interface WorkerInit {
  name: string;
  pairId: string;
  generation: number;
  image: Uint8Array;
  memoryMiB: number;
  logPort: unknown;
  channel?: Pick<PortChannelOptions, 'latencyMs'>;
  timing?: Partial<FtTiming>;
  batch?: number;
  /** The pair's disk (its spec and size) and UDP forwards, opened in the worker at go-live. */
  io?: WorkerIo;
}

export interface WorkerIo {
  disk?: { spec: string; sectors: number };
  net?: UdpForward[];
}

export type WorkerOutcome =
  /** Went live; `run` is how the promoted primary's guest ended. */
  | { reason: 'live'; icount: number; run: RunOutcome }
  | { reason: 'finished'; code: number }
  | { reason: 'halted' | 'diverged' | 'stopped' | 'refused' | 'unattached'; detail: string };

export type ToWorker =
  | { t: 'start' }
  /** The main thread's primary let go of the disk and the ports: the worker may open them. */
  | { t: 'io-released' }
  | { t: 'arbiter-reply'; id: number; ok: true; value: unknown }
  | { t: 'arbiter-reply'; id: number; ok: false; unavailable: boolean; message: string };

export type ToMain =
  | { t: 'ready' }
  | { t: 'arbiter'; id: number; op: 'testAndSet' | 'holder'; pairId: string; generation: number; claimant?: string }
  | { t: 'event'; e: NodeEvent }
  | { t: 'stats'; backup?: BackupStats; primary?: PrimaryStats; generation?: number }
  | { t: 'live'; icount: number }
  | { t: 'released'; o: ReleasedOutput }
  | { t: 'done'; outcome: WorkerOutcome }
  | { t: 'failed'; message: string };

export interface RemoteBackupOptions {
  name: string;
  pairId: string;
  generation: number;
  image: Uint8Array;
  memoryMiB?: number;
  /** The pair's arbiter: it stays in this thread and decides for both replicas. */
  arbiter: Arbiter;
  /** Flow-control marks and latency of the port channel. */
  channel?: PortChannelOptions;
  timing?: Partial<FtTiming>;
  batch?: number;
  io?: WorkerIo;
}

export type RemoteBackupOutcome =
  /** The backup went live at `icount`; `run` is its guest's end (undefined if it was killed). */
  | { reason: 'live'; icount: number; run: RunOutcome | undefined }
  | { reason: 'finished'; code: number }
  | { reason: 'halted' | 'diverged' | 'stopped' | 'refused' | 'unattached'; detail: string };

// Loader hooks for running the worker from TypeScript sources (see the top of this file).
// The compiler: oxc through rolldown's transformSync when present (vitest brings it, and it is
// what vitest itself compiles these sources with; it loads in a tenth of TypeScript's time),
// else TypeScript's transpileModule.
const TS_HOOKS = `
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
let from;
let transpile;
export function initialize(data) { from = data.from; }
async function compiler() {
  const require = createRequire(from);
  try {
    const { transformSync } = await import(pathToFileURL(require.resolve('rolldown/utils')).href);
    return (fileName, source) => {
      const r = transformSync(fileName, source, { target: 'es2022' });
      if (r.errors.length > 0) throw r.errors[0];
      return r.code;
    };
  } catch {
    const ts = require('typescript');
    return (fileName, source) => ts.transpileModule(source, {
      fileName,
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    }).outputText;
  }
}
export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (err) {
    if (err && err.code === 'ERR_MODULE_NOT_FOUND' && specifier.endsWith('.js') && context.parentURL && context.parentURL.endsWith('.ts')) {
      return next(specifier.slice(0, -3) + '.ts', context);
    }
    throw err;
  }
}
export async function load(url, context, next) {
  if (!url.startsWith('file:') || !url.endsWith('.ts')) return next(url, context);
  transpile ??= await compiler();
  const fileName = fileURLToPath(url);
  return { format: 'module', source: transpile(fileName, await readFile(fileName, 'utf8')), shortCircuit: true };
}
`;

/**
 * Starts `entry` in a worker thread. A `.js` entry runs as it is; a `.ts` entry (this code
 * running from sources, under vitest) runs behind the TypeScript loader hook above.
 */
export function startModuleWorker(entry: URL, options: WorkerOptions = {}): Worker {
  if (!entry.pathname.endsWith('.ts')) return new Worker(entry, options);
  const bootstrap = `
    const { register } = require('node:module');
    register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(TS_HOOKS)}`)}, { data: { from: ${JSON.stringify(import.meta.url)} } });
    import(${JSON.stringify(entry.href)}).catch((e) => process.nextTick(() => { throw e; }));
  `;
  return new Worker(bootstrap, { ...options, eval: true });
}

const workerEntry = (): URL => new URL(import.meta.url.endsWith('.ts') ? './backup-worker.ts' : './backup-worker.js', import.meta.url);

/**
 * A backup replica in a worker thread, seen from the main thread. Offers what the pair needs
 * of a backup: run(), events$, stats(), crash(), and, since it may go live over there, the
 * released$ outputs and stats of the primary it becomes.
 */
export class RemoteBackup {
  readonly name: string;
  /** The primary's end of the logging channel to this backup. */
  readonly channel: PortPrimaryChannel;
  private readonly events = new Subject<NodeEvent>();
  private readonly released = new Subject<ReleasedOutput>();
  private readonly liveSubject = new Subject<number>();
  readonly events$: Observable<NodeEvent> = this.events.asObservable();
  /** Outputs released by the primary this backup became after go-live. */
  readonly released$: Observable<ReleasedOutput> = this.released.asObservable();
  /** Emits the icount at which the backup went live (once, if ever). */
  readonly live$: Observable<number> = this.liveSubject.asObservable();

  private readonly worker: Worker;
  private readonly readyPromise: Promise<void>;
  private readonly donePromise: Promise<RemoteBackupOutcome>;
  private settle!: (o: RemoteBackupOutcome) => void;
  private backupStats: BackupStats | undefined;
  private promotedStats: PrimaryStats | undefined;
  private promotedGeneration: number;
  private liveAt: number | undefined;
  private outcome: RemoteBackupOutcome | undefined;
  private started = false;

  constructor(private readonly opts: RemoteBackupOptions) {
    this.name = opts.name;
    this.promotedGeneration = opts.generation;
    const { port1, port2 } = new MessageChannel();
    this.channel = createPortPrimary(port1, { ...opts.channel, ownsPort: true });
    const init: WorkerInit = {
      name: opts.name,
      pairId: opts.pairId,
      generation: opts.generation,
      image: opts.image,
      memoryMiB: opts.memoryMiB ?? DEFAULT_MEMORY_MIB,
      logPort: port2,
      ...(opts.channel?.latencyMs === undefined ? {} : { channel: { latencyMs: opts.channel.latencyMs } }),
      ...(opts.timing ? { timing: opts.timing } : {}),
      ...(opts.batch === undefined ? {} : { batch: opts.batch }),
      ...(opts.io ? { io: opts.io } : {}),
    };
    this.worker = startModuleWorker(workerEntry(), { workerData: init, transferList: [port2] });
    this.donePromise = new Promise((resolve) => { this.settle = resolve; });
    this.readyPromise = new Promise((resolve, reject) => {
      this.worker.on('message', (batch: ToMain[]) => {
        for (const m of batch) {
          if (m.t === 'ready') resolve();
          else this.handle(m);
        }
      });
      this.worker.on('error', (err) => {
        reject(err);
        this.note('error', `backup worker: ${err.message}`);
        this.end({ reason: 'stopped', detail: `worker error: ${err.message}` });
      });
      this.worker.on('exit', () => {
        reject(new Error('backup worker exited before it was ready'));
        this.end({ reason: 'stopped', detail: 'crashed' });
      });
    });
    // Nobody may await ready() (a pair stopped first): its rejection is not an error then.
    this.readyPromise.catch(() => {});
  }

  /** Resolves once the worker has booted its machine and waits for the log. */
  ready(): Promise<void> {
    return this.readyPromise;
  }

  /** Start replaying; resolves when the backup finished, halted, diverged or was killed, or, after go-live, when its guest ended. */
  run(): Promise<RemoteBackupOutcome> {
    if (!this.started) {
      this.started = true;
      this.readyPromise.then(() => this.post({ t: 'start' }), () => {});
    }
    return this.donePromise;
  }

  /**
   * The primary in this thread is gone and has let go of the disk and the ports (DESIGN §3 one
   * writer per disk): the worker's live replica opens them now. POSIX locks belong to the
   * process, so the image lock cannot tell the two threads apart: this message does.
   */
  releaseIo(): void {
    this.post({ t: 'io-released' });
  }

  /** True once the backup went live in the worker (it is now the pair's primary). */
  get isLive(): boolean {
    return this.liveAt !== undefined;
  }

  /** The generation the promoted primary runs in (its chart's, after winning the arbiter). */
  get generation(): number {
    return this.promotedGeneration;
  }

  /** The latest backup stats (posted every 100 ms); undefined once it went live or ended. */
  stats(): BackupStats | undefined {
    return this.isLive || this.outcome ? undefined : this.backupStats;
  }

  /** The latest stats of the primary this backup became, if it went live. */
  primaryStats(): PrimaryStats | undefined {
    return this.promotedStats;
  }

  /** Fail-stop: the backup's host died. The thread ends at once, mid-instruction-batch. */
  crash(): void {
    if (this.outcome) return;
    const icount = this.promotedStats?.icount ?? this.backupStats?.icount ?? 0;
    this.channel.cut();
    void this.worker.terminate();
    this.note('crashed', `killed at icount ${icount}`);
    this.end(this.liveAt === undefined ? { reason: 'stopped', detail: 'crashed' } : { reason: 'live', icount: this.liveAt, run: undefined });
  }

  private handle(m: ToMain): void {
    if (this.outcome) return;
    switch (m.t) {
      case 'arbiter':
        this.arbiter(m);
        break;
      case 'event':
        this.events.next(m.e);
        break;
      case 'stats':
        if (m.backup) this.backupStats = m.backup;
        if (m.primary) this.promotedStats = m.primary;
        if (m.generation !== undefined) this.promotedGeneration = m.generation;
        break;
      case 'live':
        this.liveAt = m.icount;
        this.liveSubject.next(m.icount);
        break;
      case 'released':
        this.released.next(m.o);
        break;
      case 'done':
        this.end(m.outcome);
        break;
      case 'failed':
        this.note('error', `backup worker: ${m.message}`);
        this.end({ reason: 'stopped', detail: `worker failed: ${m.message.split('\n')[0]}` });
        break;
      default:
        break;
    }
  }

  private arbiter(m: Extract<ToMain, { t: 'arbiter' }>): void {
    const a = this.opts.arbiter;
    const answer = m.op === 'testAndSet' ? a.testAndSet(m.pairId, m.generation, m.claimant!) : a.holder(m.pairId, m.generation);
    answer.then(
      (value) => this.post({ t: 'arbiter-reply', id: m.id, ok: true, value }),
      (e: unknown) =>
        this.post({
          t: 'arbiter-reply',
          id: m.id,
          ok: false,
          unavailable: e instanceof ArbiterUnavailableError,
          message: e instanceof Error ? e.message : String(e),
        }),
    );
  }

  private post(m: ToWorker): void {
    if (this.outcome) return;
    this.worker.postMessage(m);
  }

  private note(type: NodeEvent['type'], detail: string): void {
    this.events.next({ node: this.name, type, detail });
  }

  private end(o: RemoteBackupOutcome): void {
    if (this.outcome) return;
    this.outcome = o;
    // The worker has said all it will (or was killed): free the thread and the port.
    void this.worker.terminate();
    this.channel.dispose();
    this.settle(o);
    this.liveSubject.complete();
    this.released.complete();
    this.events.complete();
  }
}
