// Progress of a long loop, reported the same way wherever one runs: done/total, the rate per
// minute and the time left, every few seconds and once at the end. Time comes from the caller's
// clock, so a test can drive it.
import { formatSeconds } from "./units.ts";

export interface ProgressFigures {
  done: number;
  total: number;
  perMinute: number;
  etaSeconds: number;
  elapsedSeconds: number;
}

export function progressFigures(done: number, total: number, elapsedMs: number): ProgressFigures {
  const elapsedSeconds = elapsedMs / 1000;
  const perMinute = elapsedSeconds > 0 ? (done / elapsedSeconds) * 60 : 0;
  const etaSeconds = done > 0 ? ((total - done) * elapsedSeconds) / done : Number.POSITIVE_INFINITY;
  return { done, total, perMinute, etaSeconds, elapsedSeconds };
}

export function progressMessage(what: string, f: ProgressFigures): string {
  return `${what} ${f.done}/${f.total} (${f.perMinute.toFixed(1)}/min, ETA ${formatSeconds(f.etaSeconds)})`;
}

/** How often a long loop reports. */
export const PROGRESS_EVERY_MS = 5_000;

/** Counts a loop's items and hands its figures to `emit` every `everyMs` while it runs, and once at `finish`. */
export class Progress {
  done = 0;
  private readonly total: number;
  private readonly started: number;
  private readonly now: () => number;
  private readonly emit: (figures: ProgressFigures) => void;
  private readonly timer: NodeJS.Timeout;

  constructor(opts: { total: number; now: () => number; emit: (figures: ProgressFigures) => void; everyMs?: number }) {
    this.total = opts.total;
    this.now = opts.now;
    this.emit = opts.emit;
    this.started = opts.now();
    this.timer = setInterval(() => this.report(), opts.everyMs ?? PROGRESS_EVERY_MS).unref();
  }

  /** One more item done. */
  tick(): void {
    this.done += 1;
  }

  /** The figures now; nothing is emitted for an empty loop. */
  report(): void {
    if (this.total > 0) this.emit(progressFigures(this.done, this.total, this.now() - this.started));
  }

  /** Stops the timer; with `last`, reports once more (the loop ran to its end). */
  finish(last: boolean): void {
    clearInterval(this.timer);
    if (last) this.report();
  }
}
