import { randomUUID } from 'node:crypto';
import { link, open, readFile, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ArbiterUnavailableError, checkKey, type Arbiter, type ClaimResult } from './arbiter.js';

interface ClaimRecord {
  claimant: string;
  at: string;
  pid: number;
}

const errno = (err: unknown): string | undefined => (err as NodeJS.ErrnoException | undefined)?.code;

/**
 * Test-and-set by atomic exclusive creation of `DIR/<pairId>.<generation>.claim` in a
 * directory both hosts share. The claim is written to a private temp file first and then
 * hard-linked into place: link(2) fails with EEXIST if the name exists, exactly like
 * open(O_CREAT|O_EXCL), but the claim appears with its content complete, so a reader never
 * sees an empty file from a winner that is still writing. (It is also the NFS-safe idiom.)
 */
export class FileArbiter implements Arbiter {
  private closed = false;

  constructor(readonly dir: string) {}

  private claimPath(pairId: string, generation: number): string {
    return join(this.dir, `${pairId}.${generation}.claim`);
  }

  private unavailable(what: string, err: unknown): ArbiterUnavailableError {
    return new ArbiterUnavailableError(`arbiter ${this.dir}: ${what}: ${(err as Error).message}`, { cause: err });
  }

  private checkOpen(): void {
    if (this.closed) throw new Error('arbiter: closed');
  }

  async testAndSet(pairId: string, generation: number, claimant: string): Promise<ClaimResult> {
    checkKey(pairId, generation, claimant);
    this.checkOpen();
    const tmp = join(this.dir, `.${pairId}.${generation}.${process.pid}.${randomUUID()}.tmp`);
    const record: ClaimRecord = { claimant, at: new Date().toISOString(), pid: process.pid };
    try {
      const fh = await open(tmp, 'wx');
      try {
        await fh.writeFile(JSON.stringify(record));
        await fh.sync();
      } finally {
        await fh.close();
      }
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw this.unavailable('cannot write a claim', err);
    }
    try {
      await link(tmp, this.claimPath(pairId, generation));
      return 'won';
    } catch (err) {
      if (errno(err) !== 'EEXIST') throw this.unavailable('cannot place the claim', err);
      // Someone holds the key; if it is us (a retry after a lost reply), we still hold it.
      return (await this.holder(pairId, generation)) === claimant ? 'won' : 'lost';
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
  }

  async holder(pairId: string, generation: number): Promise<string | undefined> {
    checkKey(pairId, generation);
    this.checkOpen();
    let text: string;
    try {
      text = await readFile(this.claimPath(pairId, generation), 'utf8');
    } catch (err) {
      if (errno(err) !== 'ENOENT') throw this.unavailable('cannot read the claim', err);
      // ENOENT is "no holder" only if the directory itself is there.
      try {
        if (!(await stat(this.dir)).isDirectory()) throw new Error('not a directory');
      } catch (dirErr) {
        throw this.unavailable('cannot reach the directory', dirErr);
      }
      return undefined;
    }
    const record = JSON.parse(text) as Partial<ClaimRecord>;
    if (typeof record.claimant !== 'string') throw new Error(`arbiter: malformed claim for ${pairId}.${generation}`);
    return record.claimant;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
