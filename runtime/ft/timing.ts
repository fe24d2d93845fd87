/** The FT protocol's clocks, in host milliseconds. Defaults aim at failover well under 300 ms. */
export interface FtTiming {
  /** The primary sends a progress entry when it has sent nothing for this long (also while idle). */
  heartbeatMs: number;
  /** No traffic from the peer for this long: the peer is suspect (DESIGN §3 failure detection). */
  suspectMs: number;
  /** Still silent this much longer: suspicion is confirmed and the node claims the arbiter. */
  confirmMs: number;
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
  claimRetryMs: 50,
  claimRetryMaxMs: 1000,
  digestEveryMs: 1000,
};

export const withTiming = (t: Partial<FtTiming> | undefined): FtTiming => ({ ...DEFAULT_TIMING, ...t });
