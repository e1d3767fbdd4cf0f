// Exponential backoff with full jitter for whole operations against Google APIs. The client
// libraries retry single requests; this layer retries what they give up on or never retry
// (a resumable upload that ran out of library retries, a DELETE without a precondition, a
// download whose bytes failed their checksum). Generic on purpose: BigQuery uses it too.
import { setTimeout as sleep } from "node:timers/promises";

export interface RetryPolicy {
  /** Total tries, the first included (1 = no retry). */
  attempts: number;
  /** Cap of the first backoff; doubles per retry up to `maxDelayMs`. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** Only errors this accepts are retried; anything else is thrown at once. */
  isRetryable: (err: unknown) => boolean;
  signal?: AbortSignal;
  /** Called before each backoff sleep (for a log line). */
  onRetry?: (info: { attempt: number; delayMs: number; error: unknown }) => void;
  /** Source of randomness in [0, 1); tests pin it. */
  random?: () => number;
}

/**
 * Full jitter (AWS architecture blog, "Exponential Backoff And Jitter"): a uniform delay in
 * [0, min(max, base * 2^(retry-1))). Spreads retries of many clients instead of synchronising them.
 */
export function backoffDelayMs(retry: number, baseDelayMs: number, maxDelayMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxDelayMs, baseDelayMs * 2 ** Math.max(0, retry - 1));
  return Math.floor(random() * ceiling);
}

/** Runs `fn` until it resolves, throws a non-retryable error, or the attempts are used up. */
export async function withRetry<T>(fn: (attempt: number) => Promise<T>, policy: RetryPolicy): Promise<T> {
  const attempts = Math.max(1, Math.floor(policy.attempts));
  for (let attempt = 1; ; attempt++) {
    policy.signal?.throwIfAborted();
    try {
      return await fn(attempt);
    } catch (err) {
      if (attempt >= attempts || !policy.isRetryable(err) || policy.signal?.aborted) throw err;
      const delayMs = backoffDelayMs(attempt, policy.baseDelayMs, policy.maxDelayMs, policy.random);
      policy.onRetry?.({ attempt, delayMs, error: err });
      try {
        await sleep(delayMs, undefined, { signal: policy.signal });
      } catch (sleepErr) {
        // Surface the caller's abort reason, not the timer's generic AbortError.
        throw policy.signal?.aborted ? policy.signal.reason : sleepErr;
      }
    }
  }
}
