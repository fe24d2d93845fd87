// Client of the arbiter's atomic test-and-set (DESIGN §3 Split brain). The primary and the
// backup charts invoke it in their `claiming` state: it claims one pair generation, keeps
// trying while the arbiter cannot be reached (its own delays, doubling up to a cap), and ends
// with the verdict as its output: `won` (this replica may go live) or `lost` (it must halt).
// The test-and-set call itself is the runtime's, supplied as the `testAndSet` actor.
import { assign, fromPromise, setup } from 'xstate';

/** Backoff between attempts while the arbiter is unreachable, in host milliseconds. */
export interface ClaimRetry {
  /** Delay after the first failed attempt. */
  firstMs: number;
  /** The delay doubles after each failed attempt up to this cap. */
  maxMs: number;
}

export const DEFAULT_CLAIM_RETRY: ClaimRetry = { firstMs: 50, maxMs: 1000 };

/** The wait after failed attempt `attempt` (1-based): firstMs, 2·firstMs, 4·firstMs, … capped at maxMs. */
export const claimRetryDelayMs = (retry: ClaimRetry, attempt: number): number =>
  Math.min(retry.firstMs * 2 ** Math.max(0, attempt - 1), retry.maxMs);

export interface ArbiterClientInput {
  /** The generation to claim: the arbiter key (etcd key, file name, map entry). */
  generation: number;
  retry?: Partial<ClaimRetry>;
}

export interface ArbiterClientContext {
  generation: number;
  /** Attempts made so far, counting the one in flight (1-based). */
  attempt: number;
  retry: ClaimRetry;
}

/** What one test-and-set is told: the key, which attempt this is, and the wait if it fails. */
export interface ClaimAttempt {
  generation: number;
  attempt: number;
  retryInMs: number;
}

export type ClaimVerdict = 'won' | 'lost';

export interface ArbiterClientOutput {
  result: ClaimVerdict;
}

/** The client takes no events: it is driven by its test-and-set's answers and its own delays. */
export type ArbiterClientEvent = never;

export const arbiterClientMachine = setup({
  types: {
    context: {} as ArbiterClientContext,
    input: {} as ArbiterClientInput,
    output: {} as ArbiterClientOutput,
  },
  actors: {
    /**
     * One atomic test-and-set of (pair, `generation`) for this replica. Resolves 'won' or
     * 'lost'; rejects when the arbiter cannot be reached (nothing was decided). The runtime
     * supplies the real call (and tells the operator about failures); unprovided, it throws.
     */
    testAndSet: fromPromise<ClaimVerdict, ClaimAttempt>(() => {
      throw new Error('testAndSet: not provided');
    }),
  },
  delays: {
    retryDelay: ({ context }) => claimRetryDelayMs(context.retry, context.attempt),
  },
  guards: {
    answeredWon: ({ event }) => (event as { output?: unknown }).output === 'won',
    answeredLost: ({ event }) => (event as { output?: unknown }).output === 'lost',
  },
}).createMachine({
  id: 'arbiterClient',
  initial: 'claiming',
  context: ({ input }) => ({
    generation: input.generation,
    attempt: 1,
    retry: { ...DEFAULT_CLAIM_RETRY, ...input.retry },
  }),
  output: ({ event }) => (event as { output?: ArbiterClientOutput }).output ?? { result: 'lost' },
  states: {
    claiming: {
      invoke: {
        id: 'testAndSet',
        src: 'testAndSet',
        input: ({ context }) => ({
          generation: context.generation,
          attempt: context.attempt,
          retryInMs: claimRetryDelayMs(context.retry, context.attempt),
        }),
        onDone: [
          { guard: 'answeredWon', target: 'won' },
          { guard: 'answeredLost', target: 'lost' },
          // Any other answer decides nothing: treated as no answer at all.
          { target: 'unreachable' },
        ],
        // NOTE: an unanswered claim may still have been applied by the arbiter; retrying
        // the same generation is safe because test-and-set on one key answers "won" again
        // to its owner.
        onError: { target: 'unreachable' },
      },
    },
    // DESIGN §3: one that cannot reach the arbiter keeps trying and releases no output. The
    // parent stays in its own `claiming` meanwhile; nothing is decided here.
    unreachable: {
      after: {
        retryDelay: { target: 'claiming', actions: assign({ attempt: ({ context }) => context.attempt + 1 }) },
      },
    },
    won: { type: 'final', output: { result: 'won' } },
    lost: { type: 'final', output: { result: 'lost' } },
  },
});
