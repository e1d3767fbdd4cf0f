// The one retry policy of the job: exponential backoff with full jitter, for every layer that
// retries (a Google API request, a query job, a bucket call, a table in the worker pool, a
// dropped read stream resumed). Each fault is retried by one layer only: a layer that uses up its
// attempts marks the error spent, and no layer around it tries that error again, so attempts
// never multiply (6 request tries x 3 job tries x 5 table tries would be 90 for one request).
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

const spent = new WeakSet<object>();

/** Whether a retry layer has already used up its attempts on `err`: no layer around it tries again. */
export function retriesSpent(err: unknown): boolean {
  return typeof err === "object" && err !== null && spent.has(err);
}

/** Marks `err` as retried to the end by the layer that throws it (for loops that are not `withRetry`). */
export function markRetriesSpent<E>(err: E): E {
  if (typeof err === "object" && err !== null) spent.add(err);
  return err;
}

/** Runs `fn` until it resolves, throws a non-retryable error, or the attempts are used up. */
export async function withRetry<T>(fn: (attempt: number) => Promise<T>, policy: RetryPolicy): Promise<T> {
  const attempts = Math.max(1, Math.floor(policy.attempts));
  for (let attempt = 1; ; attempt++) {
    policy.signal?.throwIfAborted();
    try {
      return await fn(attempt);
    } catch (err) {
      if (retriesSpent(err) || !policy.isRetryable(err) || policy.signal?.aborted) throw err;
      if (attempt >= attempts) throw markRetriesSpent(err);
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
