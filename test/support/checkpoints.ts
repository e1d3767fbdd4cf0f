// Generates checkpoint files shaped like the extraction stage's output (interval_time as
// timestamp[us, UTC], float64 columns with nulls, row groups of 10,000 rows), for merge tests
// and benchmarks that need many wide files without building a warehouse.
import { mkdir } from "node:fs/promises";
import path from "node:path";
import pl from "nodejs-polars";
import { TARGET_COLUMNS } from "../../src/constants.ts";
import { rng } from "./rng.ts";

export { rng };

export interface CheckpointShape {
  dir: string;
  rows: number;
  files: number;
  columnsPerFile: number;
  /** Fraction of null cells in feature columns. */
  nullRate?: number;
  seed?: number;
}

const START_MICROS = 1_577_836_800_000_000n; // 2020-01-01T00:00:00Z
const MINUTE_MICROS = 60_000_000n;


function keySeries(rows: number, offset = 0): pl.Series {
  const keys = BigInt64Array.from({ length: rows }, (_, i) => START_MICROS + BigInt(i + offset) * MINUTE_MICROS);
  return pl.Series("interval_time", keys as unknown as number[]).cast(pl.Datetime("us", "UTC"));
}

function floatColumn(name: string, rows: number, random: () => number, nullRate: number): pl.Series {
  const values: (number | null)[] = new Array(rows);
  for (let i = 0; i < rows; i += 1) values[i] = random() < nullRate ? null : random() * 2 - 1;
  return pl.Series(name, values, pl.Float64);
}

async function write(frame: pl.DataFrame, file: string): Promise<void> {
  await frame.lazy().sinkParquet(file, { compression: "zstd", compressionLevel: 1, statistics: true, rowGroupSize: 10_000 }).collect();
}

/** Writes target.parquet and f0000.parquet ... in `dir`; returns their paths. */
export async function generateCheckpoints(shape: CheckpointShape): Promise<{ target: string; features: string[] }> {
  await mkdir(shape.dir, { recursive: true });
  const random = rng(shape.seed ?? 42);
  const nullRate = shape.nullRate ?? 0.1;
  const target = path.join(shape.dir, "target.parquet");
  await write(pl.DataFrame([keySeries(shape.rows), ...TARGET_COLUMNS.map((c) => floatColumn(c, shape.rows, random, 0))]), target);
  const features: string[] = [];
  for (let f = 0; f < shape.files; f += 1) {
    // Each table misses its first few minutes, as late-starting feature families do.
    const offset = f % 3;
    const rows = shape.rows - offset;
    const columns = [keySeries(rows, offset)];
    for (let c = 0; c < shape.columnsPerFile; c += 1) columns.push(floatColumn(`t${f}_c${c}`, rows, random, nullRate));
    const file = path.join(shape.dir, `f${String(f).padStart(4, "0")}.parquet`);
    await write(pl.DataFrame(columns), file);
    features.push(file);
  }
  return { target, features };
}
