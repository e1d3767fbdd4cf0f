// FAULT_RATE (testing only) for the embedded backends: the local bucket's calls and the DuckDB
// warehouse's discovery queries fail now and then with the retryable error a real transient
// fault produces, so the retry paths run for real. Each draw is keyed by the seed, the operation,
// its target and how many times that pair has been tried, so a run fails the same calls whatever
// order concurrent calls happen in (the extraction worker keys its draw the same way).
import { createHash } from "node:crypto";
import { JobError } from "../errors.ts";

export interface FaultSettings {
  /** Share of calls that fail, in (0, 0.5]. */
  rate: number;
  seed: number;
}

export class FaultInjector {
  private readonly settings: FaultSettings;
  private readonly tries = new Map<string, number>();
  /** Faults injected so far, per operation (for tests and log lines). */
  readonly injected = new Map<string, number>();

  constructor(settings: FaultSettings) {
    this.settings = settings;
  }

  /**
   * Throws an injected transient fault for this try of `operation` on `target`, at the configured
   * rate. `target` keys the draw, so it must not vary between runs (an object name, not a temp
   * path); `shown` names it in the message when that differs.
   */
  maybeFail(operation: string, target: string, shown = target): void {
    const key = `${operation}:${target}`;
    const attempt = (this.tries.get(key) ?? 0) + 1;
    this.tries.set(key, attempt);
    const digest = createHash("sha256").update(`${this.settings.seed}:${key}:${attempt}`).digest();
    if (digest.readUInt32BE(0) / 2 ** 32 >= this.settings.rate) return;
    this.injected.set(operation, (this.injected.get(operation) ?? 0) + 1);
    throw new JobError(`injected transient fault (FAULT_RATE=${this.settings.rate}) in ${operation} of ${shown}`, {
      reason: "injected-fault",
      retryable: true,
      fix: "unset FAULT_RATE",
    });
  }
}

/** Whether `err` is one of ours, so a caller that converts errors passes it through unchanged. */
export function isInjectedFault(err: unknown): err is JobError {
  return err instanceof JobError && err.reason === "injected-fault";
}
