// The backup end of the TCP channel says what the primary answered (`hello`, TcpBackupEnd):
// undefined until admitted, then the hello itself. It was a getter copied by Object.assign,
// which read it once at creation: undefined for ever.
import { describe, expect, it } from 'vitest';
import { RefusedError } from '../runtime/channel/channel.js';
import { connectBackup, listenPrimary } from '../runtime/channel/tcp.js';
import type { PairIdentity } from '../runtime/channel/tcp-frames.js';

const KEY = Buffer.alloc(32, 0x3c);
const HOST = '127.0.0.1';
const IDENTITY: PairIdentity = { instance: 'phello-42', imageDigest: 'fedcba9876543210fedcba9876543210', memoryMiB: 16 };
const MEMBER = { instance: '', imageDigest: IDENTITY.imageDigest, memoryMiB: 16 };

describe('TCP backup end: hello', () => {
  it('is undefined before admission and the primary\'s hello after it', async () => {
    const l = await listenPrimary({ identity: IDENTITY, host: HOST, port: 0, key: KEY });
    const b = connectBackup({ member: MEMBER, host: HOST, port: l.port, key: KEY });
    try {
      expect(b.hello).toBeUndefined();
      await b.opened;
      expect(b.hello).toEqual({ ...IDENTITY, mode: 'boot', generation: 1, reason: '' });
      // Read again, after the admission settled: the same answer, not a copy taken at creation.
      expect((await b.admission).instance).toBe(b.hello?.instance);
    } finally {
      b.close();
      await l.close();
    }
  });

  it('stays undefined for a backup turned away', async () => {
    const l = await listenPrimary({ identity: IDENTITY, host: HOST, port: 0, key: KEY });
    const b = connectBackup({ member: { ...MEMBER, memoryMiB: 32 }, host: HOST, port: l.port, key: KEY });
    try {
      await expect(b.opened).rejects.toBeInstanceOf(RefusedError);
      expect(b.hello).toBeUndefined();
    } finally {
      await l.close();
    }
  });
});
