// Typed errors: what failed, the value involved, and what to do next.

export interface JobErrorOptions {
  /** Machine-readable reason, stable across versions (logged as `reason`). */
  reason: string;
  /** What the user can do about it. */
  fix?: string;
  /** True when trying the same thing again may succeed (transient warehouse/bucket faults). */
  retryable?: boolean;
  cause?: unknown;
}

export class JobError extends Error {
  readonly reason: string;
  readonly fix: string | undefined;
  readonly retryable: boolean;

  constructor(message: string, opts: JobErrorOptions) {
    super(message, { cause: opts.cause });
    this.name = "JobError";
    this.reason = opts.reason;
    this.fix = opts.fix;
    this.retryable = opts.retryable ?? false;
  }

  /** One line for a person: the message, then the fix. */
  describe(): string {
    return this.fix ? `${this.message}. Fix: ${this.fix}` : this.message;
  }
}

/** Every problem found in the environment, one line each, reported together. */
export class ConfigError extends JobError {
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(`invalid configuration:\n  ${problems.join("\n  ")}`, {
      reason: "config",
      fix: "set the variables listed above and run again (see README, Configuration)",
    });
    this.name = "ConfigError";
    this.problems = problems;
  }
}

export function describeError(err: unknown): string {
  if (err instanceof JobError) return err.describe();
  if (err instanceof Error) return err.message;
  return String(err);
}
