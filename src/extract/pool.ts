// The extraction pool: piscina threads sized to the CPU quota, fed tasks while their estimated
// working bytes fit the memory budget together (a 233-column slice and a 14-column one do not cost
// the same; 32 wide tables at once would not fit), each task retried on transient failures.
//
// Tasks go to piscina without an abort signal, at most `inFlight` at a time: piscina runs an
// abortable task alone on its thread, and aborting one terminates its thread, which inside
// DuckDB's native code crashes the process (exit 134, not 130). On an abort no new task starts;
// the ones in flight get ABORT_GRACE_MS to finish, then the pool is torn down.
import { Piscina } from "piscina";
import { withRetry } from "../retry.ts";
import type { ExtractResult, ExtractTask, FaultDraw, WorkerFailure } from "./task.ts";

const WORKER_FILE = new URL("./worker.ts", import.meta.url).href;
/** Cheap on the local backend; on BigQuery each attempt already retries its own requests. */
export const ATTEMPTS_PER_TASK = 5;
const RETRY_BASE_MS = 500;
const RETRY_MAX_MS = 8_000;
/** After SIGTERM Cloud Run waits 10 s before SIGKILL; tasks in flight get half of that to finish. */
export const ABORT_GRACE_MS = 5_000;

export interface PoolOptions {
  threads: number;
  /** Tasks a thread carries at once (BigQuery reads are mostly waiting). */
  tasksPerThread: number;
  budgetBytes: number;
  signal: AbortSignal;
  /** FAULT_RATE (testing only): each attempt gets its own seeded draw. */
  faults?: { rate: number; seed: number } | undefined;
  onRetry?: (task: ExtractTask, attempt: number, delayMs: number, failure: WorkerFailure) => void;
}

export function isFailure(result: ExtractResult): result is WorkerFailure {
  return "failed" in result;
}

export class ExtractionPool {
  private readonly pool: Piscina<ExtractTask, ExtractResult>;
  private readonly opts: PoolOptions;
  private readonly maxInFlight: number;
  private running = 0;
  private heldBytes = 0;
  private readonly waiting: Array<{ bytes: number; go: () => void }> = [];
  private destroyed: Promise<void> | undefined;
  private graceTimer: NodeJS.Timeout | undefined;
  private readonly onAbort = () => {
    this.graceTimer = setTimeout(() => void this.destroy(), ABORT_GRACE_MS);
    for (const w of this.waiting.splice(0)) w.go();
  };

  constructor(opts: PoolOptions) {
    this.opts = opts;
    this.maxInFlight = Math.max(1, opts.threads * opts.tasksPerThread);
    this.pool = new Piscina<ExtractTask, ExtractResult>({
      filename: WORKER_FILE,
      maxThreads: opts.threads,
      minThreads: opts.threads,
      concurrentTasksPerWorker: opts.tasksPerThread,
      // Piscina's default parks an idle worker in a blocking Atomics.wait, and a thread parked
      // there ignored terminate(): a SIGTERM then hung the job instead of exiting 130.
      atomics: "disabled",
      idleTimeout: 1_000,
    });
    opts.signal.addEventListener("abort", this.onAbort, { once: true });
  }

  /** Bytes reserved by tasks in flight and by the caller (files not yet staged). */
  get reservedBytes(): number {
    return this.heldBytes;
  }

  /** Waits until `bytes` fit the budget beside what is held (always admits when nothing is). */
  async reserve(bytes: number): Promise<void> {
    const fits = () => this.running < this.maxInFlight && (this.heldBytes === 0 || this.heldBytes + bytes <= this.opts.budgetBytes);
    while (!fits() && !this.opts.signal.aborted) await new Promise<void>((go) => this.waiting.push({ bytes, go }));
    this.opts.signal.throwIfAborted();
    this.running += 1;
    this.heldBytes += bytes;
  }

  /** Gives back bytes held by `reserve` (or part of them: the rest stays held, e.g. a file waiting to be staged). */
  release(bytes: number, taskDone = true): void {
    this.heldBytes = Math.max(0, this.heldBytes - bytes);
    if (taskDone) this.running -= 1;
    for (const w of this.waiting.splice(0)) w.go();
  }

  /** Holds bytes without a task (a written part waiting for its upload). */
  hold(bytes: number): void {
    this.heldBytes += bytes;
  }

  /**
   * Runs `task`, for which `reservedBytes` were reserved, until it succeeds, fails for good or the
   * attempts are used up. The reservation is released when the result is back; the caller holds
   * whatever the result still occupies.
   */
  async run(task: ExtractTask, reservedBytes: number): Promise<ExtractResult> {
    try {
      return await withRetry(
        async (attempt) => {
          const fault: FaultDraw | undefined = this.opts.faults ? { ...this.opts.faults, attempt } : undefined;
          const result = await this.pool.run(fault ? { ...task, fault } : task);
          if (isFailure(result) && result.retryable) throw new FailedTry(result);
          return result;
        },
        {
          attempts: ATTEMPTS_PER_TASK,
          baseDelayMs: RETRY_BASE_MS,
          maxDelayMs: RETRY_MAX_MS,
          isRetryable: (err) => err instanceof FailedTry,
          signal: this.opts.signal,
          onRetry: ({ attempt, delayMs, error }) => this.opts.onRetry?.(task, attempt, delayMs, (error as FailedTry).failure),
        },
      );
    } catch (err) {
      // The last try's failure is the result: the stage names every table that failed.
      if (err instanceof FailedTry) return err.failure;
      throw err;
    } finally {
      this.release(reservedBytes);
    }
  }

  destroy(): Promise<void> {
    this.opts.signal.removeEventListener("abort", this.onAbort);
    clearTimeout(this.graceTimer);
    return (this.destroyed ??= this.pool.destroy());
  }
}

/** A retryable worker failure, thrown so the one retry policy (src/retry.ts) can try the task again. */
class FailedTry extends Error {
  readonly failure: WorkerFailure;

  constructor(failure: WorkerFailure) {
    super(failure.message);
    this.failure = failure;
  }
}
