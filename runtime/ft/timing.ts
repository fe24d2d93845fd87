/** The FT protocol's clocks, in host milliseconds. Defaults aim at failover well under 300 ms. */
export interface FtTiming {
  /** The primary sends a progress entry when it has sent nothing for this long (also while idle). */
  heartbeatMs: number;
  /** No traffic from the peer for this long: the peer is suspect (DESIGN §3 failure detection). */
  suspectMs: number;
  /** Still silent this much longer: suspicion is confirmed and the node claims the arbiter. */
  confirmMs: number;
  /**
   * Above suspectMs: suspicion waits longer on a host that has shown long gaps between the
   * peer's messages, up to this (runtime/channel/watchdog.ts). 0: always suspectMs.
   */
  suspectMaxMs: number;
  /**
   * The arbiter client's first wait between test-and-set attempts while the arbiter is
   * unreachable; each further wait doubles, up to `claimRetryMaxMs`.
   */
  claimRetryMs: number;
  claimRetryMaxMs: number;
  /** The primary logs a state digest this often, for divergence detection. */
  digestEveryMs: number;
}

export const DEFAULT_TIMING: FtTiming = {
  heartbeatMs: 5,
  suspectMs: 60,
  confirmMs: 30,
  suspectMaxMs: 0,
  claimRetryMs: 50,
  claimRetryMaxMs: 1000,
  digestEveryMs: 1000,
};

export const withTiming = (t: Partial<FtTiming> | undefined): FtTiming => ({ ...DEFAULT_TIMING, ...t });

/**
 * Failure detection between processes (`ftvm primary` / `ftvm backup`): 100 + 50 ms on a calm
 * host, so a failover takes about 150 ms of detection. A Node process can stall (JIT, GC, a
 * descheduled core on a loaded host: bench/detect.mjs measured 90-320 ms at p99-p99.9 with the
 * load average at 15 on 2 cores), so instead of failing a healthy pair over:
 * - the suspicion timeout grows to 4 times the longest recent gap between the peer's messages
 *   (a gap as long as the floor is remembered 10 s; on a host at load 20 the next long gap was
 *   2-3 times the previous one), or 4 times this process's own longest
 *   recent stall (the host stalls both alike), up to 2 s;
 * - time this process itself could not run counts neither as the peer's silence nor as the
 *   confirmation's wait (runtime/channel/watchdog.ts, StallMeter).
 * docs/BENCHMARKS.md, "Failure detection across processes".
 */
export const PROCESS_TIMING: Pick<FtTiming, 'suspectMs' | 'confirmMs' | 'suspectMaxMs' | 'heartbeatMs'> = {
  suspectMs: 100,
  confirmMs: 50,
  suspectMaxMs: 2000,
  heartbeatMs: DEFAULT_TIMING.heartbeatMs,
};
