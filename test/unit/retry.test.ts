import { describe, expect, it } from "vitest";
import { JobError } from "../../src/errors.ts";
import { toJobError } from "../../src/gcp/errors.ts";
import { backoffDelayMs, retriesSpent, withRetry } from "../../src/retry.ts";

class Transient extends Error {}

const fast = { baseDelayMs: 1, maxDelayMs: 2, isRetryable: (e: unknown) => e instanceof Transient };

describe("withRetry", () => {
  it("retries retryable failures until the operation succeeds, passing the attempt number", async () => {
    const seen: number[] = [];
    const result = await withRetry(
      async (attempt) => {
        seen.push(attempt);
        if (attempt < 3) throw new Transient(`try ${attempt}`);
        return "done";
      },
      { ...fast, attempts: 5 },
    );
    expect(result).toBe("done");
    expect(seen).toEqual([1, 2, 3]);
  });

  it("throws a non-retryable error at once, without a second attempt", async () => {
    let calls = 0;
    await expect(
      withRetry(
        async () => {
          calls++;
          throw new Error("accessDenied");
        },
        { ...fast, attempts: 5 },
      ),
    ).rejects.toThrow("accessDenied");
    expect(calls).toBe(1);
  });

  it("gives up after the attempt limit with the last error", async () => {
    let calls = 0;
    await expect(
      withRetry(
        async (attempt) => {
          calls++;
          throw new Transient(`failure ${attempt}`);
        },
        { ...fast, attempts: 3 },
      ),
    ).rejects.toThrow("failure 3");
    expect(calls).toBe(3);
  });

  it("reports each backoff before sleeping it", async () => {
    const retries: { attempt: number; delayMs: number }[] = [];
    await withRetry(
      async (attempt) => {
        if (attempt < 3) throw new Transient("x");
      },
      {
        attempts: 3,
        baseDelayMs: 8,
        maxDelayMs: 100,
        isRetryable: () => true,
        random: () => 0.5,
        onRetry: ({ attempt, delayMs }) => retries.push({ attempt, delayMs }),
      },
    );
    expect(retries).toEqual([
      { attempt: 1, delayMs: 4 },
      { attempt: 2, delayMs: 8 },
    ]);
  });

  it("stops sleeping and rejects with the abort reason when the signal fires", async () => {
    const controller = new AbortController();
    const started = Date.now();
    const run = withRetry(
      async () => {
        throw new Transient("503");
      },
      { attempts: 10, baseDelayMs: 60_000, maxDelayMs: 60_000, isRetryable: () => true, random: () => 0.99, signal: controller.signal },
    );
    setTimeout(() => controller.abort(new Error("SIGTERM received")), 20);
    await expect(run).rejects.toThrow("SIGTERM received");
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("does not start when the signal is already aborted", async () => {
    let calls = 0;
    await expect(withRetry(async () => void calls++, { ...fast, attempts: 3, signal: AbortSignal.abort(new Error("stopped")) })).rejects.toThrow("stopped");
    expect(calls).toBe(0);
  });
});

describe("backoffDelayMs (full jitter)", () => {
  it("draws from [0, base * 2^(retry-1)) capped at the maximum", () => {
    expect(backoffDelayMs(1, 100, 10_000, () => 0.999)).toBe(99);
    expect(backoffDelayMs(4, 100, 10_000, () => 0.999)).toBe(799);
    expect(backoffDelayMs(20, 100, 10_000, () => 0.999)).toBe(9_990);
    expect(backoffDelayMs(3, 100, 10_000, () => 0)).toBe(0);
  });

  it("stays within its bounds for any random draw", () => {
    for (let retry = 1; retry <= 12; retry++) {
      for (const r of [0, 0.1, 0.5, 0.9, 0.999999]) {
        const d = backoffDelayMs(retry, 50, 2_000, () => r);
        expect(d).toBeGreaterThanOrEqual(0);
        expect(d).toBeLessThan(Math.min(2_000, 50 * 2 ** (retry - 1)));
      }
    }
  });
});

describe("retries do not multiply across layers", () => {
  it("an error the inner layer retried to the end is not retried by the layer around it", async () => {
    let requests = 0;
    const request = () =>
      withRetry(
        async () => {
          requests++;
          throw new Transient("HTTP 503");
        },
        { ...fast, attempts: 4 },
      );
    let outerTries = 0;
    const error = await withRetry(
      async () => {
        outerTries++;
        return request();
      },
      { ...fast, attempts: 3 },
    ).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(Transient);
    expect(retriesSpent(error)).toBe(true);
    expect(requests).toBe(4);
    expect(outerTries).toBe(1);
  });

  it("an error the inner layer did not retry is still retried by the layer around it", async () => {
    let outerTries = 0;
    const result = await withRetry(
      async () => {
        outerTries++;
        // The inner layer does not take this kind of error: it is the outer layer's to retry.
        return withRetry(
          async () => {
            if (outerTries < 3) throw new Transient("job backendError");
            return "done";
          },
          { ...fast, attempts: 4, isRetryable: () => false },
        );
      },
      { ...fast, attempts: 3 },
    );
    expect(result).toBe("done");
    expect(outerTries).toBe(3);
  });

  it("a Google error given up on stays spent when it becomes a JobError, so the worker pool does not run the table again", async () => {
    const apiError = Object.assign(new Error("Service Unavailable"), { code: 503 });
    const spent = await withRetry(
      async () => {
        throw apiError;
      },
      { ...fast, attempts: 2, isRetryable: () => true },
    ).catch((err: unknown) => err);
    const job = toJobError(spent, "bigquery", { action: "querying p.d.t", project: "p" });
    expect(job).toBeInstanceOf(JobError);
    expect(job.retryable).toBe(true);
    expect(retriesSpent(job)).toBe(true);
    const fresh = toJobError(Object.assign(new Error("Service Unavailable"), { code: 503 }), "bigquery", { action: "querying p.d.t", project: "p" });
    expect(retriesSpent(fresh)).toBe(false);
  });
});
