// Progress lines for long loops: done/total, rate per minute and time left.
import { formatSeconds } from "../units.ts";

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
