// The logging channel between processes or hosts (DESIGN §4): TCP, authenticated and private
// with a pre-shared key through TLS-PSK. The ends behave as the embedded channel's do
// (in-process.ts): the same log frames, acks that only rise, the same SendWindow for flow
// control, and every failure (bad key, bad frame, broken socket) as one 'channel.failed'.
//
// Why TLS 1.2 with PSK suites: Node 20 (OpenSSL 3) does TLS-PSK in both 1.2 and 1.3, but in
// 1.2 the cipher list names PSK suites only, so no certificate path exists and a wrong key
// fails the handshake itself. ECDHE-PSK-CHACHA20-POLY1305 comes first for forward secrecy;
// PSK-AES256-GCM-SHA384 is the plain-PSK fallback.

import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { Observable, ReplaySubject, Subject } from 'rxjs';
import { Decoder, LogFrameError } from '../log/codec.js';
import type { LogEntry } from '../log/entry.js';
import type { BackupEnd, ChannelEvent, ChannelStats, FlowControlOptions, Lag, PrimaryEnd } from './channel.js';
import { SendWindow } from './send-window.js';
import { CONTROL_MAGIC, ControlDecoder, decodeHello, encodeAck, encodeBye, encodeHello, MIN_KEY_BYTES, type Hello } from './tcp-frames.js';
import { FRAME_MAGIC } from '../log/codec.js';
import { concatBytes } from './bytes.js';

export const TLS_CIPHERS = 'ECDHE-PSK-CHACHA20-POLY1305:PSK-AES256-GCM-SHA384';
/** The PSK identity both ends name; the key, not the identity, is the secret. */
export const PSK_IDENTITY = 'ftvm-log-v1';

export interface TcpChannelOptions extends FlowControlOptions {
  host: string;
  port: number;
  /** The pre-shared key (see tcp-frames.ts parseKey for the key file format). */
  key: Uint8Array;
}

export interface TcpPrimaryEnd extends PrimaryEnd {
  /** Resolves once a backup has connected and passed the handshake; rejects if the end fails first. */
  readonly attached: Promise<void>;
  /** Address of the attached backup, `host:port`. */
  readonly peer: string | undefined;
  stats(): ChannelStats;
}

export interface TcpBackupListener {
  /** The port actually bound (useful with port 0). */
  port: number;
  /**
   * A new end that the next authenticated connection attaches to (re-protection, DESIGN §3):
   * with `hello`, the connection is first told the generation to claim and the memory size
   * (tcp-frames.ts), and a stranger failing the handshake is only refused (`refused$`), never
   * fatal to the running primary. Throws while the previous end is still waiting or open.
   */
  accept(hello?: Omit<Hello, 'mode'>): TcpPrimaryEnd;
  /** Connections turned away: a failed handshake (wrong key) or a backup arriving while busy. */
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
   * Join a running primary (re-protection): expect its hello first (tcp-frames.ts) and resolve
   * `opened` only once it has told the generation and memory size. Without `join`, a hello
   * (the primary is running, or busy) fails the end with a message saying so.
   */
  join?: boolean;
}

export interface TcpBackupEnd extends BackupEnd {
  /** Resolves once connected and authenticated; rejects with the failure otherwise. */
  readonly opened: Promise<void>;
  /** What a running primary told a joining backup (set before `opened` resolves). */
  readonly hello: Hello | undefined;
  stats(): { bytesReceived: number; entriesReceived: number };
}


const asError = (err: unknown): Error => (err instanceof Error ? err : new Error(String(err)));
/** OpenSSL reports handshake failures (a wrong key among them) with ERR_SSL_* codes. */
const isTlsError = (err: unknown): boolean => /^ERR_SSL_/.test((err as NodeJS.ErrnoException | undefined)?.code ?? '');

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
export async function listenPrimary(opts: TcpChannelOptions): Promise<TcpListener> {
  const l = await listenForBackups(opts);
  return { ...l, end: l.accept(), accept: l.accept, close: l.close };
}

interface EndSlot {
  end: TcpPrimaryEnd;
  waiting(): boolean;
  open(): boolean;
  take(s: tls.TLSSocket): void;
  fail(e: Error): void;
  /** The first end fails on a wrong key (loud on both sides); a re-protection end only refuses. */
  loud: boolean;
}

/** A listener with no end yet: a backup gone live listens this way for its own new backup. */
export async function listenForBackups(opts: TcpChannelOptions): Promise<TcpBackupListener> {
  const key = checkKey(opts.key);
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
    const why = `backup ${from} failed the TLS-PSK handshake (wrong key?): ${err.message.split('\n')[0]}`;
    // NOTE: before the first backup attached, a failed handshake fails the end so that a
    // misconfigured key is loud on both sides; otherwise it is only refused, so a stranger
    // cannot break a running pair.
    if (current?.waiting() && current.loud && isTlsError(err)) current.fail(new Error(why, { cause: err }));
    else refused.next(why);
  });
  server.on('secureConnection', (s: tls.TLSSocket) => {
    if (current?.waiting()) {
      current.take(s);
      return;
    }
    // Tell a joining backup why (a booting backup sees a clear error too, see connectBackup).
    refused.next(`backup ${s.remoteAddress}:${s.remotePort}: busy (a backup is attached or this primary is not alone yet)`);
    s.on('error', () => undefined);
    s.end(encodeHello({ mode: 'busy', generation: 1, memoryMiB: 1 }));
    setTimeout(() => s.destroy(), 1000).unref();
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
    accept(hello?: Omit<Hello, 'mode'>): TcpPrimaryEnd {
      if (current && (current.waiting() || current.open())) throw new Error('tcp listener: the previous backup end is still in use');
      current = makeEnd(opts, hello);
      return current.end;
    },
    close: async () => {
      current?.end.close();
      refused.complete();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function makeEnd(opts: TcpChannelOptions, hello: Omit<Hello, 'mode'> | undefined): EndSlot {
  const window = new SendWindow(opts);
  const control = new ControlDecoder();
  const events = new ReplaySubject<ChannelEvent>();
  let state: 'waiting' | 'open' | 'closing' | 'closed' | 'failed' = 'waiting';
  let sock: tls.TLSSocket | undefined;
  let peer: string | undefined;
  let outbound: Uint8Array[] = [];
  let flushScheduled = false;
  let byeReceived = false;
  let closeTimer: NodeJS.Timeout | undefined;
  let attach!: { resolve: () => void; reject: (e: Error) => void };
  const attached = new Promise<void>((resolve, reject) => { attach = { resolve, reject }; });
  attached.catch(() => undefined);

  const finish = (ev: ChannelEvent): void => {
    if (state === 'closed' || state === 'failed') return;
    state = ev.type === 'channel.failed' ? 'failed' : 'closed';
    outbound = [];
    clearTimeout(closeTimer);
    if (ev.type === 'channel.failed') sock?.destroy();
    attach.reject(ev.type === 'channel.failed' ? ev.error : new Error('channel closed before a backup attached'));
    events.next(ev);
    events.complete();
    window.complete();
  };
  const fail = (error: Error): void => finish({ type: 'channel.failed', error });

  const flush = (): void => {
    flushScheduled = false;
    if (!sock || outbound.length === 0 || (state !== 'open' && state !== 'closing')) return;
    const chunk = concatBytes(outbound);
    outbound = [];
    sock.write(chunk);
  };

  const take = (s: tls.TLSSocket): void => {
    sock = s;
    peer = `${s.remoteAddress}:${s.remotePort}`;
    state = 'open';
    s.setNoDelay(true);
    if (hello) s.write(encodeHello({ mode: 'join', ...hello }));
    s.on('data', (chunk: Buffer) => {
      let frames;
      try {
        frames = control.push(chunk);
      } catch (err) {
        fail(asError(err));
        return;
      }
      for (const f of frames) {
        if (f.type === 'ack') window.ack(f.seq);
        else byeReceived = true;
      }
    });
    s.on('end', () => {
      if (state === 'closing') finish({ type: 'channel.closed', by: 'local' });
      else if (byeReceived) finish({ type: 'channel.closed', by: 'peer' });
      else fail(new Error(`backup ${peer} closed the connection without a goodbye`));
    });
    s.on('error', (err) => fail(new Error(`channel to backup ${peer}: ${err.message}`, { cause: err })));
    s.on('close', () => {
      if (state === 'closing') finish({ type: 'channel.closed', by: 'local' });
      else fail(new Error(`connection to backup ${peer} closed`));
    });
    events.next({ type: 'channel.open' });
    attach.resolve();
    flush();
  };

  const end: TcpPrimaryEnd = {
    send(e: LogEntry): void {
      if (state !== 'waiting' && state !== 'open') return;
      const frame = window.frame(e);
      outbound.push(frame);
      // Entries of one tick leave in one write, as the embedded channel sends one chunk.
      if (!flushScheduled) {
        flushScheduled = true;
        queueMicrotask(flush);
      }
    },
    acked$: window.acked$,
    get ackedSeq(): number {
      return window.ackedSeq;
    },
    get lag(): Lag {
      return window.lag;
    },
    pressure$: window.pressure$,
    events$: events.asObservable(),
    attached,
    get peer(): string | undefined {
      return peer;
    },
    stats: () => window.stats(),
    close(): void {
      if (state === 'waiting') {
        finish({ type: 'channel.closed', by: 'local' });
        return;
      }
      if (state !== 'open') return;
      // Orderly close: what was sent still arrives, then the backup sees the end of stream.
      flush();
      state = 'closing';
      sock!.end();
      // A backup that never answers the close is not waited for forever.
      closeTimer = setTimeout(() => {
        sock?.destroy();
        finish({ type: 'channel.closed', by: 'local' });
      }, 2000);
      closeTimer.unref();
    },
  };
  return { end, waiting: () => state === 'waiting', open: () => state === 'open' || state === 'closing', take, fail, loud: hello === undefined };
}

/**
 * Connects to a primary's listener. Refused or unreachable connections are retried for
 * `connectTimeoutMs` (default 5 s); a failed handshake is not retried (a wrong key stays wrong).
 */
export function connectBackup(opts: TcpBackupOptions): TcpBackupEnd {
  const key = checkKey(opts.key);
  const connectTimeoutMs = opts.connectTimeoutMs ?? 5000;
  const retryMs = opts.retryMs ?? 100;
  const decoder = new Decoder();
  const events = new ReplaySubject<ChannelEvent>();
  const entries = new Subject<LogEntry>();
  const stats = { bytesReceived: 0, entriesReceived: 0 };
  const where = `${opts.host}:${opts.port}`;
  let state: 'connecting' | 'open' | 'closed' | 'failed' = 'connecting';
  let sock: tls.TLSSocket | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  // Chunks that arrived before anyone subscribed wait here, as in a socket buffer.
  const inbox: Uint8Array[] = [];
  let subscribers = 0;
  let sawEnd = false;
  let eof = false;
  let pendingAck = -1;
  let sentAck = -1;
  // Until the first bytes tell a booting primary (a log frame) from a running one (a hello).
  let greeting: Uint8Array | undefined = new Uint8Array(0);
  let hello: Hello | undefined;
  let ackScheduled = false;
  let open!: { resolve: () => void; reject: (e: Error) => void };
  const opened = new Promise<void>((resolve, reject) => { open = { resolve, reject }; });
  opened.catch(() => undefined);
  const t0 = Date.now();

  const finish = (ev: ChannelEvent): void => {
    if (state === 'closed' || state === 'failed') return;
    state = ev.type === 'channel.failed' ? 'failed' : 'closed';
    clearTimeout(retryTimer);
    inbox.length = 0;
    if (ev.type === 'channel.failed') sock?.destroy();
    open.reject(ev.type === 'channel.failed' ? ev.error : new Error('channel closed'));
    events.next(ev);
    events.complete();
    entries.complete();
  };
  const fail = (error: Error): void => finish({ type: 'channel.failed', error });

  const drain = (): void => {
    while (state === 'open' && subscribers > 0 && inbox.length > 0) {
      let decoded: LogEntry[];
      try {
        decoded = decoder.push(inbox.shift()!);
      } catch (err) {
        if (err instanceof LogFrameError) for (const e of err.entries) entries.next(e);
        fail(asError(err));
        return;
      }
      stats.entriesReceived += decoded.length;
      for (const e of decoded) {
        if (e.type === 'end') sawEnd = true;
        entries.next(e);
      }
    }
    if (state === 'open' && eof && inbox.length === 0) {
      try {
        decoder.finish();
      } catch (err) {
        fail(asError(err));
        return;
      }
      // A primary that ends the log closes in order; one that vanishes mid-stream failed.
      if (sawEnd) finish({ type: 'channel.closed', by: 'peer' });
      else fail(new Error(`primary ${where} closed the connection before the end of the log`));
    }
  };

  /** Bytes past the greeting once it is settled, or undefined while it is not (or failed). */
  const greet = (chunk: Buffer): Buffer | undefined => {
    const buf = Buffer.concat([greeting!, chunk]);
    if (buf.length === 0) return undefined;
    if (buf[0] !== CONTROL_MAGIC) {
      greeting = undefined;
      if (!opts.join) return buf;
      fail(new Error(buf[0] === FRAME_MAGIC
        ? `primary ${where} is booting a new pair, not taking a joining backup: connect with --connect`
        : `primary ${where} sent no hello to a joining backup (first byte 0x${buf[0]!.toString(16)})`));
      return undefined;
    }
    let got;
    try {
      got = decodeHello(buf);
    } catch (err) {
      fail(asError(err));
      return undefined;
    }
    if (!got) {
      greeting = buf;
      return undefined;
    }
    greeting = undefined;
    if (got.hello.mode === 'busy') {
      fail(new Error(`primary ${where} is busy: it has a backup already or is not running alone yet`));
      return undefined;
    }
    if (!opts.join) {
      fail(new Error(`primary ${where} is running alone and takes a new backup only as a joining one (--join)`));
      return undefined;
    }
    hello = got.hello;
    open.resolve();
    return buf.subarray(got.used);
  };

  const attempt = (): void => {
    if (state !== 'connecting') return;
    const s = tls.connect({
      host: opts.host,
      port: opts.port,
      ciphers: TLS_CIPHERS,
      minVersion: 'TLSv1.2',
      maxVersion: 'TLSv1.2',
      // No certificates: the peer is authenticated by knowing the key.
      checkServerIdentity: () => undefined,
      pskCallback: () => ({ psk: key, identity: PSK_IDENTITY }),
    });
    sock = s;
    let secure = false;
    s.on('secureConnect', () => {
      if (state !== 'connecting') {
        s.destroy();
        return;
      }
      secure = true;
      state = 'open';
      s.setNoDelay(true);
      events.next({ type: 'channel.open' });
      if (!opts.join) open.resolve();
      drain();
    });
    s.on('data', (chunk: Buffer) => {
      if (state !== 'open') return;
      stats.bytesReceived += chunk.length;
      if (greeting) {
        const rest = greet(chunk);
        if (!rest) return;
        chunk = rest;
      }
      inbox.push(chunk);
      drain();
    });
    s.on('end', () => {
      eof = true;
      drain();
    });
    s.on('error', (err: NodeJS.ErrnoException) => {
      if (!secure) {
        if (isTlsError(err)) {
          fail(new Error(`primary ${where} refused the TLS-PSK handshake (wrong key?): ${err.message.split('\n')[0]}`, { cause: err }));
        } else if ((err.code === 'ECONNREFUSED' || err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH' || err.code === 'ECONNRESET')
          && Date.now() - t0 < connectTimeoutMs) {
          s.destroy();
          retryTimer = setTimeout(attempt, retryMs);
        } else {
          fail(new Error(`cannot connect to primary ${where}: ${err.message}`, { cause: err }));
        }
        return;
      }
      fail(new Error(`channel to primary ${where}: ${err.message}`, { cause: err }));
    });
    s.on('close', () => {
      if (secure && state === 'open' && !eof) fail(new Error(`connection to primary ${where} closed`));
    });
  };

  const flushAck = (): void => {
    ackScheduled = false;
    if (state !== 'open' || pendingAck <= sentAck) return;
    sentAck = pendingAck;
    sock!.write(encodeAck(sentAck));
  };

  attempt();

  return {
    entries$: new Observable<LogEntry>((sub) => {
      const s = entries.subscribe(sub);
      subscribers++;
      queueMicrotask(drain);
      return () => {
        subscribers--;
        s.unsubscribe();
      };
    }),
    ack(seq: number): void {
      if (state !== 'open' || seq <= pendingAck) return;
      pendingAck = seq;
      // Acks of one tick (one socket chunk's entries) travel as one frame.
      if (!ackScheduled) {
        ackScheduled = true;
        queueMicrotask(flushAck);
      }
    },
    events$: events.asObservable(),
    opened,
    get hello(): Hello | undefined {
      return hello;
    },
    stats: () => ({ ...stats }),
    close(): void {
      if (state === 'open') {
        flushAck();
        const s = sock!;
        s.end(encodeBye());
        // A primary that is gone (host lost: no FIN, no RST) never completes the close;
        // the socket must not keep this process alive for TCP's retransmission timeout.
        setTimeout(() => s.destroy(), 1000).unref();
      } else {
        sock?.destroy();
      }
      finish({ type: 'channel.closed', by: 'local' });
    },
  };
}
