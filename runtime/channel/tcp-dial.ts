// The backup's TLS-PSK connection to its primary, as the channel's backup end uses it: one
// dial, its events, and what can be done with it. Kept apart from tcp.ts (which brings the
// channel core, its chart and rxjs) so that the socket thread (socket-thread-worker.ts) loads
// only node:tls: it dials with this very function, in its own thread.
//
// Why TLS 1.2 with PSK suites: Node 20 (OpenSSL 3) does TLS-PSK in both 1.2 and 1.3, but in
// 1.2 the cipher list names PSK suites only, so no certificate path exists and a wrong key
// fails the handshake itself. ECDHE-PSK-CHACHA20-POLY1305 comes first for forward secrecy;
// PSK-AES256-GCM-SHA384 is the plain-PSK fallback.

import tls from 'node:tls';

export const TLS_CIPHERS = 'ECDHE-PSK-CHACHA20-POLY1305:PSK-AES256-GCM-SHA384';
/** The PSK identity both ends name; the key, not the identity, is the secret. */
export const PSK_IDENTITY = 'ftvm-log-v1';

/** OpenSSL reports handshake failures (a wrong key among them) with ERR_SSL_* codes. */
export const isTlsError = (err: unknown): boolean => /^ERR_SSL_/.test((err as NodeJS.ErrnoException | undefined)?.code ?? '');
/** OpenSSL's own words for a failure ("sslv3 alert bad record mac"), not its file and line. */
export const tlsReason = (err: Error): string => (err as Error & { reason?: string }).reason ?? err.message.split('\n')[0]!;

/** What happens to one dialled connection, in order: `secure` once TLS is up, then data, end, error, close. */
export interface LineEvents {
  secure(): void;
  data(chunk: Uint8Array): void;
  /** The primary ended its side in order (TCP FIN behind its data). */
  end(): void;
  /** A socket or TLS error (`code`, `reason` as node:tls gives them). */
  error(err: NodeJS.ErrnoException): void;
  close(): void;
}

/** One dialled connection to the primary. */
export interface Line {
  write(bytes: Uint8Array): void;
  /** Orderly end of this side behind what was written, `last` the final bytes. */
  end(last: Uint8Array): void;
  destroy(): void;
  /** RFC 5705 keying material of this session (undefined while no session is up). */
  exportKey(label: string, bytes: number): Buffer | undefined;
}

/** Dials the primary once; the caller retries. */
export type Dial = (events: LineEvents) => Line;

/** A TLS-PSK dial in this thread. */
export function dialTls(host: string, port: number, key: Buffer): Dial {
  return (events) => {
    const s = tls.connect({
      host,
      port,
      ciphers: TLS_CIPHERS,
      minVersion: 'TLSv1.2',
      maxVersion: 'TLSv1.2',
      // No certificates: the peer is authenticated by knowing the key.
      checkServerIdentity: () => undefined,
      pskCallback: () => ({ psk: key, identity: PSK_IDENTITY }),
    });
    s.on('secureConnect', () => {
      s.setNoDelay(true);
      events.secure();
    });
    s.on('data', (chunk: Buffer) => events.data(chunk));
    s.on('end', () => events.end());
    s.on('error', (err) => events.error(err));
    s.on('close', () => events.close());
    return {
      write: (bytes) => {
        s.write(bytes);
      },
      end: (last) => {
        s.end(last);
      },
      destroy: () => {
        s.destroy();
      },
      exportKey: (label, bytes) => (s.destroyed ? undefined : s.exportKeyingMaterial(bytes, label, Buffer.alloc(0))),
    };
  };
}
