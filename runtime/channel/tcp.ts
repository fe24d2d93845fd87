// The logging channel between processes or hosts (DESIGN §4): TCP, authenticated and private
// with a pre-shared key through TLS-PSK. A thin transport under the channel core (core.ts),
// as the embedded channel is: the same log frames, acks that only rise, the same flow
// control, and every failure (bad key, bad frame, broken socket) as one 'channel.failed'.
// Each end's chart runs the v2 handshake's outcome (admitted, refused) and the close.
// The TLS suites, and the backup's dial, are in tcp-dial.ts (the socket thread dials with it).

import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { Subject, type Observable } from 'rxjs';
import { RefusedError, type Admission, type BackupEnd, type ChannelStats, type FlowControlOptions, type PrimaryEnd } from './channel.js';
import { BackupCore, DEFAULT_HOLD_MS, PrimaryCore, type ChannelSnapshot, type ChartOptions } from './core.js';
import {
  ControlDecoder, decodeHello, decodeRequest, encodeAck, encodeBye, encodeHello, encodeRequest, MIN_KEY_BYTES, refusal,
  type Hello, type JoinRequest, type PairIdentity,
} from './tcp-frames.js';
import { concatBytes } from './bytes.js';
import { dialTls, isTlsError, PSK_IDENTITY, TLS_CIPHERS, tlsReason, type Dial, type Line } from './tcp-dial.js';

export { PSK_IDENTITY, TLS_CIPHERS } from './tcp-dial.js';

export interface TcpChannelOptions extends FlowControlOptions {
  host: string;
  port: number;
  /** The pre-shared key (see tcp-frames.ts parseKey for the key file format). */
  key: Uint8Array;
  /** This end's chart (id, inspection, silence watchdog). */
  chart?: ChartOptions;
}

export interface TcpPrimaryEnd extends PrimaryEnd {
  /** Resolves once a backup has connected and passed the handshake; rejects if the end fails first. */
  readonly attached: Promise<void>;
  /** Address of the attached backup, `host:port`. */
  readonly peer: string | undefined;
  stats(): ChannelStats;
  /** Chunks written so far (one TLS record and write(2) each). */
  chunksSent(): number;
  /** This end's chart, snapshot by snapshot. */
  readonly state$: Observable<ChannelSnapshot>;
  /**
   * Keying material of this connection's TLS session (RFC 5705), `bytes` long, for `label`:
   * the heartbeat link's key (heartbeat.ts). Undefined while no session is up.
   */
  exportKey(label: string, bytes: number): Buffer | undefined;
}

export interface TcpListenOptions extends TcpChannelOptions {
  /** The pair this primary runs: a backup is admitted only as a member of it (DESIGN §3). */
  identity: PairIdentity;
  /** A connection that sends no join request within this long is turned away. */
  requestTimeoutMs?: number;
}

export interface TcpBackupListener {
  /** The port actually bound (useful with port 0). */
  port: number;
  /**
   * A new end that the next admitted backup attaches to. Without `offer` it takes the pair's
   * first backup (`boot`: replays from instruction 0, generation 1); with it, a joining backup
   * (re-protection, DESIGN §3) told the generation to claim. Throws while the previous end is
   * still waiting or open.
   */
  accept(offer?: { generation: number }): TcpPrimaryEnd;
  /**
   * Connections turned away, one line each: a failed TLS handshake (wrong key, a stray client),
   * no or a malformed join request, a backup of another pair, image or memory size, or one
   * arriving while busy. None of them touches the waiting or attached end.
   */
  readonly refused$: Observable<string>;
  /** Stop listening and close the current end. */
  close(): Promise<void>;
}

export interface TcpListener extends TcpBackupListener {
  /** The first end, for the backup booted together with the primary. */
  end: TcpPrimaryEnd;
}

export interface TcpBackupOptions extends TcpChannelOptions {
  /** Keep retrying a refused or unreachable connection for this long (the primary may start later). */
  connectTimeoutMs?: number;
  retryMs?: number;
  /**
   * Join a running primary (re-protection: restore its snapshot) rather than boot a new pair
   * with it (replay from instruction 0).
   */
  join?: boolean;
  /** What this backup runs, and the pair instance it means ('' for whichever the primary runs). */
  member: Omit<JoinRequest, 'mode'>;
}

export interface TcpBackupEnd extends BackupEnd {
  /** Resolves once admitted; rejects with RefusedError when turned away, or the failure. */
  readonly opened: Promise<void>;
  readonly admission: Promise<Admission>;
  /** What the primary answered (set before `opened` resolves). */
  readonly hello: Hello | undefined;
  stats(): { bytesReceived: number; entriesReceived: number };
  readonly state$: Observable<ChannelSnapshot>;
  /**
   * Keying material of this connection's TLS session (RFC 5705), `bytes` long, for `label`:
   * the heartbeat link's key (heartbeat.ts). Undefined while no session is up.
   */
  exportKey(label: string, bytes: number): Buffer | undefined;
}


const asError = (err: unknown): Error => (err instanceof Error ? err : new Error(String(err)));

function checkKey(key: Uint8Array): Buffer {
  if (!(key instanceof Uint8Array) || key.length < MIN_KEY_BYTES) throw new RangeError(`tcp channel: a pre-shared key of at least ${MIN_KEY_BYTES} bytes is required`);
  return Buffer.from(key);
}

/**
 * Listens for one backup. Entries sent before it connects wait in memory (the caller usually
 * awaits `end.attached` before running the guest, so the backup starts at the same icount).
 * While a backup is attached, further connections are refused; once it has gone, that end is
 * closed or failed for good: re-protection takes the next backup on a new end (`accept`).
 */
export async function listenPrimary(opts: TcpListenOptions): Promise<TcpListener> {
  const l = await listenForBackups(opts);
  return { ...l, end: l.accept(), accept: l.accept, close: l.close };
}

interface EndSlot {
  end: TcpPrimaryEnd;
  /** The end's chart still waits for a backup (`connecting`). */
  waiting(): boolean;
  /** Its chart has admitted one and not ended. */
  open(): boolean;
  take(s: tls.TLSSocket, rest: Uint8Array): void;
  fail(e: Error): void;
  /** What this end offers: the pair's first backup (`boot`) or a joining one. */
  offer: 'boot' | 'join';
  generation: number;
}

/**
 * A listener with no end yet: a backup gone live listens this way for its own new backup.
 * Every connection is decided on its own (DESIGN §3 Membership): TLS-PSK first, then the
 * backup's join request, checked against this pair's identity; only then does it reach the
 * waiting end. Anything else is refused with one line on `refused$`, and listening goes on.
 */
export async function listenForBackups(opts: TcpListenOptions): Promise<TcpBackupListener> {
  const key = checkKey(opts.key);
  const identity = opts.identity;
  const requestTimeoutMs = opts.requestTimeoutMs ?? 5000;
  const refused = new Subject<string>();
  let current: EndSlot | undefined;

  const server = tls.createServer({
    ciphers: TLS_CIPHERS,
    minVersion: 'TLSv1.2',
    maxVersion: 'TLSv1.2',
    pskIdentityHint: PSK_IDENTITY,
    pskCallback: (_socket, identity) => (identity === PSK_IDENTITY ? key : null),
  });
  server.on('tlsClientError', (err, s) => {
    const from = `${s.remoteAddress}:${s.remotePort}`;
    refused.next(isTlsError(err)
      ? `${from} failed the TLS-PSK handshake (a wrong key, or not an ftvm backup): ${tlsReason(err)}`
      : `${from}: ${tlsReason(err)}`);
    s.destroy();
  });
  const turnAway = (s: tls.TLSSocket, why: string, answer?: Hello): void => {
    refused.next(why);
    if (answer) s.end(encodeHello(answer));
    else s.destroy();
    setTimeout(() => s.destroy(), 1000).unref();
  };
  const answer = (mode: 'busy' | 'refused', reason: string): Hello => ({ ...identity, mode, generation: current?.generation ?? 1, reason });
  server.on('secureConnection', (s: tls.TLSSocket) => {
    const from = `${s.remoteAddress}:${s.remotePort}`;
    s.on('error', () => undefined);
    let buf: Uint8Array = new Uint8Array(0);
    const timer = setTimeout(() => turnAway(s, `${from} sent no join request within ${requestTimeoutMs} ms`), requestTimeoutMs);
    timer.unref();
    s.once('close', () => clearTimeout(timer));
    const onData = (chunk: Buffer): void => {
      buf = buf.length === 0 ? chunk : concatBytes([buf, chunk]);
      let got;
      try {
        got = decodeRequest(buf);
      } catch (err) {
        clearTimeout(timer);
        s.off('data', onData);
        turnAway(s, `${from} sent no valid join request: ${(err as Error).message}`);
        return;
      }
      if (!got) return;
      clearTimeout(timer);
      s.off('data', onData);
      const rest = buf.subarray(got.used);
      if (!current?.waiting()) {
        const why = 'it has a backup already (or is not running alone yet)';
        turnAway(s, `backup ${from} refused: busy: ${why}`, answer('busy', why));
        return;
      }
      const why = refusal(identity, current.offer, got.request);
      if (why) {
        turnAway(s, `backup ${from} refused: ${why}`, answer('refused', why));
        return;
      }
      current.take(s, rest);
    };
    s.on('data', onData);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => current?.fail(new Error(`listener: ${err.message}`, { cause: err })));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    refused$: refused.asObservable(),
    accept(offer?: { generation: number }): TcpPrimaryEnd {
      if (current && (current.waiting() || current.open())) throw new Error('tcp listener: the previous backup end is still in use');
      current = makeEnd(opts, identity, offer);
      return current.end;
    },
    close: async () => {
      current?.end.close();
      refused.complete();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function makeEnd(opts: TcpChannelOptions, identity: PairIdentity, joinOffer: { generation: number } | undefined): EndSlot {
  const offer = joinOffer ? 'join' : 'boot';
  const generation = joinOffer?.generation ?? 1;
  const control = new ControlDecoder();
  let sock: tls.TLSSocket | undefined;
  let peer: string | undefined;
  let closeTimer: NodeJS.Timeout | undefined;

  const core: PrimaryCore = new PrimaryCore({ ...opts, ...opts.chart, holdMs: opts.holdMs ?? DEFAULT_HOLD_MS }, {
    // Admitted by the listener (it checked the join request): the hello names the instance
    // and generation, and the log follows it.
    startHandshake() {
      sock!.write(encodeHello({ ...identity, mode: offer, generation, reason: '' }));
      core.admitted();
    },
    write: (chunk) => sock!.write(chunk),
    // Orderly close: what was sent still arrives, then the backup sees the end of stream.
    end() {
      sock!.end();
      // A backup that never answers the close is not waited for forever.
      closeTimer = setTimeout(() => {
        sock?.destroy();
        core.ended();
      }, 2000);
      closeTimer.unref();
    },
    abort(error) {
      clearTimeout(closeTimer);
      if (error) sock?.destroy();
    },
  });
  core.end.events$.subscribe({ complete: () => clearTimeout(closeTimer) });

  const take = (s: tls.TLSSocket, rest: Uint8Array): void => {
    sock = s;
    peer = `${s.remoteAddress}:${s.remotePort}`;
    s.setNoDelay(true);
    const onControl = (chunk: Uint8Array): void => {
      let frames;
      try {
        frames = control.push(chunk);
      } catch (err) {
        core.fail(err);
        return;
      }
      for (const f of frames) {
        if (f.type === 'ack') core.ack(f.seq);
        else core.peerClosed();
      }
    };
    s.on('data', onControl);
    const gone = (why: string): void => {
      if (core.closing) core.ended();
      else core.fail(new Error(why));
    };
    s.on('end', () => gone(`backup ${peer} closed the connection without a goodbye`));
    s.on('error', (err) => core.fail(new Error(`channel to backup ${peer}: ${err.message}`, { cause: err })));
    s.on('close', () => gone(`connection to backup ${peer} closed`));
    core.connected();
    if (rest.length > 0) onControl(rest);
  };

  // NOTE Object.assign would read a getter once (peer: undefined for ever): define it instead.
  const end = Object.defineProperty(Object.assign(Object.create(core.end) as PrimaryEnd, {
    attached: core.attached,
    stats: () => core.stats(),
    chunksSent: () => core.chunks,
    state$: core.state$,
    exportKey: (label: string, bytes: number) => (sock && !sock.destroyed ? sock.exportKeyingMaterial(bytes, label, Buffer.alloc(0)) : undefined),
  }), 'peer', { get: (): string | undefined => peer, enumerable: true }) as TcpPrimaryEnd;
  return {
    end,
    waiting: () => core.snapshot.matches('connecting'),
    open: () => core.snapshot.hasTag('writable') || core.snapshot.matches('handshaking'),
    take,
    fail: (e) => core.fail(e),
    offer,
    generation,
  };
}

/**
 * Connects to a primary's listener. Refused or unreachable connections are retried for
 * `connectTimeoutMs` (default 5 s); a failed handshake is not retried (a wrong key stays wrong).
 * `dial` makes each connection: a TLS socket in this thread by default; the socket thread
 * (socket-thread.ts) passes one whose socket lives in another thread.
 */
export function connectBackup(opts: TcpBackupOptions, dial?: Dial): TcpBackupEnd {
  const key = checkKey(opts.key);
  const connect = dial ?? dialTls(opts.host, opts.port, key);
  const connectTimeoutMs = opts.connectTimeoutMs ?? 5000;
  const retryMs = opts.retryMs ?? 100;
  const where = `${opts.host}:${opts.port}`;
  let sock: Line | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  // Until the primary's hello has arrived whole.
  let greeting: Uint8Array | undefined = new Uint8Array(0);
  let hello: Hello | undefined;
  let open!: { resolve: () => void; reject: (e: Error) => void };
  const opened = new Promise<void>((resolve, reject) => { open = { resolve, reject }; });
  opened.catch(() => undefined);
  const admission = opened.then((): Admission => ({ mode: hello!.mode as 'boot' | 'join', instance: hello!.instance, generation: hello!.generation, memoryMiB: hello!.memoryMiB }));
  admission.catch(() => undefined);
  const t0 = Date.now();

  const core: BackupCore = new BackupCore({ ...opts.chart, holdMs: opts.holdMs ?? DEFAULT_HOLD_MS }, {
    startHandshake: () => sock!.write(encodeRequest({ mode: opts.join ? 'join' : 'boot', ...opts.member })),
    writeAck: (seq) => sock!.write(encodeAck(seq)),
    end() {
      const s = sock!;
      s.end(encodeBye());
      // A primary that is gone (host lost: no FIN, no RST) never completes the close;
      // the socket must not keep this process alive for TCP's retransmission timeout.
      setTimeout(() => s.destroy(), 1000).unref();
      core.ended();
    },
    abort() {
      clearTimeout(retryTimer);
      sock?.destroy();
    },
  });
  core.end.events$.subscribe({
    next: (e) => {
      if (e.type === 'channel.open') open.resolve();
      else if (e.type === 'channel.failed') open.reject(e.error);
      else if (e.type === 'channel.closed') open.reject(new Error('channel closed'));
    },
  });

  /** Bytes past the primary's hello once it admitted us, or undefined while it has not (or failed). */
  const greet = (chunk: Buffer): Buffer | undefined => {
    const buf = Buffer.concat([greeting!, chunk]);
    let got;
    try {
      got = decodeHello(buf);
    } catch (err) {
      core.fail(new Error(`primary ${where} did not answer as an ftvm primary: ${(err as Error).message}`, { cause: err }));
      return undefined;
    }
    if (!got) {
      greeting = buf;
      return undefined;
    }
    greeting = undefined;
    const h = got.hello;
    const want = opts.join ? 'join' : 'boot';
    // The primary decides membership; this side checks the answer as well (DESIGN §3).
    const why = h.mode === 'busy' ? `primary ${where} is busy: ${h.reason}`
      : h.mode === 'refused' ? `primary ${where} refused this backup: ${h.reason}`
        : h.mode !== want ? `primary ${where} offered to ${h.mode}, this backup asked to ${want}`
          : opts.member.instance !== '' && h.instance !== opts.member.instance ? `primary ${where} runs pair ${h.instance}, not ${opts.member.instance}`
            : h.imageDigest !== opts.member.imageDigest ? `primary ${where} runs another guest image (${h.imageDigest})`
              : h.memoryMiB !== opts.member.memoryMiB ? `primary ${where} runs ${h.memoryMiB} MiB, this backup ${opts.member.memoryMiB} MiB`
                : undefined;
    if (why) {
      core.refused(new RefusedError(why));
      return undefined;
    }
    hello = h;
    core.admitted();
    return buf.subarray(got.used);
  };

  const attempt = (): void => {
    if (!core.snapshot.matches('connecting')) return;
    let secure = false;
    // A primary that ends the log closes in order; one that vanishes mid-stream failed.
    let eof = false;
    const s: Line = connect({
      secure() {
        if (!core.snapshot.matches('connecting')) {
          s.destroy();
          return;
        }
        secure = true;
        core.connected();
      },
      data(chunk) {
        if (greeting) {
          core.counts.bytesReceived += chunk.length;
          const rest = greet(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
          if (!rest) return;
          core.counts.bytesReceived -= rest.length;
          chunk = rest;
        }
        core.chunk(chunk);
      },
      end() {
        eof = true;
        core.streamEnded(() => (core.sawEndEntry ? undefined : new Error(`primary ${where} closed the connection before the end of the log`)));
      },
      error(err) {
        if (!secure) {
          if (isTlsError(err) && tlsReason(err) === 'wrong version number') {
            // What answered is not TLS at all (another service on that port): there is no
            // primary there to refuse anything, and the key is not to blame.
            core.fail(new Error(`${where} is not an ftvm primary: it answered, but not with TLS (${tlsReason(err)})`, { cause: err }));
          } else if (isTlsError(err)) {
            core.refused(new RefusedError(`primary ${where} refused the TLS-PSK handshake (wrong key?): ${tlsReason(err)}`, { cause: err }));
          } else if ((err.code === 'ECONNREFUSED' || err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH' || err.code === 'ECONNRESET')
            && Date.now() - t0 < connectTimeoutMs) {
            s.destroy();
            retryTimer = setTimeout(attempt, retryMs);
          } else {
            core.fail(new Error(`cannot connect to primary ${where}: ${err.message}`, { cause: err }));
          }
          return;
        }
        core.fail(new Error(`channel to primary ${where}: ${err.message}`, { cause: err }));
      },
      close() {
        if (secure && !eof && !core.closing) core.streamEnded(() => new Error(`connection to primary ${where} closed`));
      },
    });
    sock = s;
  };

  attempt();

  // NOTE Object.assign reads a getter once (hello: undefined for ever), as the primary end's
  // peer above: define it instead.
  return Object.defineProperty(Object.assign(Object.create(core.end) as BackupEnd, {
    opened,
    admission,
    stats: () => ({ ...core.counts }),
    state$: core.state$,
    exportKey: (label: string, bytes: number) => sock?.exportKey(label, bytes),
  }), 'hello', { get: (): Hello | undefined => hello, enumerable: true }) as TcpBackupEnd;
}
