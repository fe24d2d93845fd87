// The fault proxy in its own process (proxy-process.ts says why), seen from the harness: the
// same controls as a FaultProxy (stall, cut, corrupt, holdWhen, close), each a message to the
// child, which acts on it when it arrives (a few ms later on a loaded host at most). The
// child is a direct child of the harness, stopped by close() (or killed by PID on a timeout).
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { FaultProxy } from './proxy.js';

export type ProxyRequest =
  | { type: 'stall'; ms: number }
  | { type: 'cut' }
  | { type: 'corrupt' }
  | { type: 'hold'; pattern: string; ms: number }
  | { type: 'close' };

export interface ProxyCounts {
  bytes: { down: number; up: number };
  datagrams: { down: number; up: number; dropped: number };
}

export type ProxyReport =
  | { type: 'ready'; port: number; raised: boolean }
  /** The hold asked for is set: the next chunk carrying its pattern stalls. */
  | { type: 'holding' }
  | ({ type: 'closed' } & ProxyCounts);

/** What the harness needs of a proxy, wherever it runs. */
export interface ChannelProxy {
  readonly port: number;
  stall(ms: number): void;
  cut(): void;
  corrupt(): void;
  /**
   * Stall once a chunk from the client carries `pattern` (FaultProxy.holdWhen); resolves once
   * the proxy has it, so that traffic sent after that is held (a message to a process takes a
   * few ms to arrive).
   */
  holdWhen(pattern: Buffer, ms: number): Promise<void>;
  /** Stops relaying; resolves with what was relayed. */
  close(): Promise<ProxyCounts>;
}

/** A FaultProxy in the harness's own thread, as a ChannelProxy. */
export const inThread = (p: FaultProxy): ChannelProxy => ({
  port: p.port,
  stall: (ms) => p.stall(ms),
  cut: () => p.cut(),
  corrupt: () => p.corrupt(),
  holdWhen: async (pattern, ms) => p.holdWhen(pattern, ms),
  close: async () => {
    await p.close();
    return { bytes: { ...p.bytes }, datagrams: { ...p.datagrams } };
  },
});

/** The built entry: from dist/ also when the harness itself runs from source (vitest). */
const entry = (): string => fileURLToPath(import.meta.url.endsWith('.ts')
  ? new URL('../../dist/runtime/faults/proxy-process.js', import.meta.url)
  : new URL('./proxy-process.js', import.meta.url));

export class ProcessProxy implements ChannelProxy {
  private closed: Promise<ProxyCounts> | undefined;

  private constructor(private readonly child: ChildProcess, readonly port: number, readonly raised: boolean) {}

  static async start(targetHost: string, targetPort: number, host = '127.0.0.1'): Promise<ProcessProxy> {
    const child = fork(entry(), [targetHost, String(targetPort), host], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [] });
    const ready = await new Promise<ProxyReport & { type: 'ready' }>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('the fault proxy process did not start within 20 s')), 20_000);
      child.once('message', (m: ProxyReport) => {
        clearTimeout(t);
        if (m.type === 'ready') resolve(m);
        else reject(new Error(`the fault proxy process answered ${m.type}`));
      });
      child.once('exit', (code, sig) => {
        clearTimeout(t);
        reject(new Error(`the fault proxy process exited (${sig ?? code}) before it listened`));
      });
    }).catch((e: unknown) => {
      child.kill('SIGKILL');
      throw e;
    });
    return new ProcessProxy(child, ready.port, ready.raised);
  }

  /** The child's process id. */
  get pid(): number {
    return this.child.pid ?? 0;
  }

  private send(m: ProxyRequest): void {
    if (this.child.connected) this.child.send(m);
  }

  stall(ms: number): void { this.send({ type: 'stall', ms }); }
  cut(): void { this.send({ type: 'cut' }); }
  corrupt(): void { this.send({ type: 'corrupt' }); }
  holdWhen(pattern: Buffer, ms: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (!this.child.connected) return reject(new Error('the fault proxy process is gone'));
      const t = setTimeout(() => reject(new Error('the fault proxy process did not take the hold within 10 s')), 10_000);
      const on = (m: ProxyReport): void => {
        if (m.type !== 'holding') return;
        clearTimeout(t);
        this.child.off('message', on);
        resolve();
      };
      this.child.on('message', on);
      this.send({ type: 'hold', pattern: pattern.toString('hex'), ms });
    });
  }

  close(): Promise<ProxyCounts> {
    this.closed ??= new Promise<ProxyCounts>((resolve) => {
      const none: ProxyCounts = { bytes: { down: 0, up: 0 }, datagrams: { down: 0, up: 0, dropped: 0 } };
      let counts = none;
      const t = setTimeout(() => this.child.kill('SIGKILL'), 5000);
      this.child.on('message', (m: ProxyReport) => {
        if (m.type === 'closed') counts = { bytes: m.bytes, datagrams: m.datagrams };
      });
      const done = (): void => {
        clearTimeout(t);
        resolve(counts);
      };
      if (this.child.exitCode !== null || this.child.signalCode !== null) return done();
      this.child.once('exit', done);
      this.send({ type: 'close' });
    });
    return this.closed;
  }
}
