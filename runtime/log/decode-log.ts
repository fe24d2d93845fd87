import { Observable } from 'rxjs';
import { Decoder, LogFrameError } from './codec.js';
import type { LogEntry } from './entry.js';

/**
 * Decodes a chunked byte stream into entries. Errors with LogFrameError on a bad frame (after
 * emitting every good entry before it) or when the source completes inside a frame.
 */
export const decodeLog$ = (chunks$: Observable<Uint8Array>): Observable<LogEntry> =>
  new Observable<LogEntry>((sub) => {
    const decoder = new Decoder();
    return chunks$.subscribe({
      next: (chunk) => {
        let entries: readonly LogEntry[];
        try {
          entries = decoder.push(chunk);
        } catch (err) {
          if (err instanceof LogFrameError) for (const e of err.entries) sub.next(e);
          sub.error(err);
          return;
        }
        for (const e of entries) sub.next(e);
      },
      error: (err: unknown) => sub.error(err),
      complete: () => {
        try {
          decoder.finish();
        } catch (err) {
          sub.error(err);
          return;
        }
        sub.complete();
      },
    });
  });
