/**
 * Builds one wide parquet file from files that have the same rows split on the same row-group
 * boundaries (the merge's aligned tables), one file at a time and in any order: each file's
 * column-chunk bytes are copied to the end of the output as one range as soon as it is ready,
 * and the file can be deleted at once. `finish` writes the footer that puts the columns in file
 * index order, row group by row group. Like stitch.ts, nothing is decoded.
 *
 * Why not stitch.ts here: stitching copies row group by row group, so every aligned file must
 * exist until the end. That is a second copy of the output on disk (or, on Cloud Run's in-memory
 * filesystem, in memory), written once and read once more. Appending writes the output once and
 * keeps only the files not yet appended.
 *
 * Layout: the bytes of file k's chunks are contiguous, so a row group's chunks lie in as many
 * runs as there are files (668), not one. Parquet locates every chunk by its own offset and
 * readers (polars, DuckDB, pyarrow, hyparquet) read chunks by offset; RowGroup.file_offset is
 * the first chunk of the row group in file order and total_compressed_size the sum of its
 * chunks, as the format defines them.
 *
 * Memory: each appended file's footer thrift bytes (a few hundred bytes per column chunk:
 * 17k columns x 45 row groups is about 80 MB) and one copy buffer.
 */
import { closeSync, openSync } from "node:fs";
import { open, rename, rm } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { readRawFooter } from "./footer.ts";
import { Output, planFile, writeStitchedFooter, type FilePlan, type StitchOptions, type StitchResult } from "./stitch.ts";

const COPY_BUFFER_BYTES = 8 << 20;
const MAGIC = Buffer.from("PAR1", "latin1");
const ARROW_SCHEMA_KEY = "ARROW:schema";

interface Appended {
  plan: FilePlan;
  thrift: Uint8Array;
}

export class ColumnAppender {
  private readonly outPath: string;
  private readonly tmpPath: string;
  private readonly fh: FileHandle;
  private readonly out: Output;
  private readonly opts: StitchOptions;
  private readonly files: Appended[] = [];
  private readonly owner = new Map<string, number>();
  private rowGroupRows: number[] | undefined;
  private rgStart: Float64Array = new Float64Array(0);
  private rgCompressed: Float64Array = new Float64Array(0);
  private closed = false;

  private constructor(outPath: string, fh: FileHandle, opts: StitchOptions) {
    this.outPath = outPath;
    this.tmpPath = `${outPath}.tmp`;
    this.fh = fh;
    this.out = new Output(fh, COPY_BUFFER_BYTES);
    this.opts = opts;
  }

  /** Starts `outPath + ".tmp"`; the output appears under `outPath` only when `finish` succeeds. */
  static async create(outPath: string, opts: StitchOptions = {}): Promise<ColumnAppender> {
    const fh = await open(`${outPath}.tmp`, "w");
    const appender = new ColumnAppender(outPath, fh, opts);
    await appender.out.write(MAGIC);
    return appender;
  }

  /** Copies every column chunk of `file` to the output; `index` is its place in the output's column order. */
  async append(file: string, index: number): Promise<void> {
    if (this.closed) throw new Error("ColumnAppender: already finished or aborted");
    if (!Number.isInteger(index) || index < 0) throw new Error(`ColumnAppender: bad file index ${index}`);
    if (this.files[index]) throw new Error(`ColumnAppender: file index ${index} appended twice (${this.files[index].plan.path} and ${file})`);
    const raw = await readRawFooter(file);
    const plan = planFile(raw.thrift, file, raw.footerStart, index, this.opts.dropColumns);
    if (!this.rowGroupRows) {
      this.rowGroupRows = plan.rowGroupRows;
      this.rgStart = new Float64Array(plan.rowGroupRows.length).fill(Number.POSITIVE_INFINITY);
      this.rgCompressed = new Float64Array(plan.rowGroupRows.length);
    } else {
      const ref = this.rowGroupRows;
      if (ref.length !== plan.rowGroupRows.length || ref.some((n, g) => n !== plan.rowGroupRows[g])) {
        throw new Error(`row groups differ: ${file} has row groups of ${plan.rowGroupRows.join(",")} rows, the files before it ${ref.join(",")}`);
      }
    }
    for (const name of plan.names) {
      const prev = this.owner.get(name);
      if (prev !== undefined) throw new Error(`duplicate column "${name}": in ${this.files[prev]?.plan.path} (file ${prev}) and ${file} (file ${index})`);
    }
    for (const name of plan.names) this.owner.set(name, index);

    // One range from the first kept chunk to the end of the last: polars and DuckDB write a
    // file's chunks back to back, so this is the data area minus nothing.
    let lo = Number.POSITIVE_INFINITY;
    let hi = 0;
    for (let i = 0; i < plan.chunkStart.length; i++) {
      lo = Math.min(lo, plan.chunkStart[i]!);
      hi = Math.max(hi, plan.chunkStart[i]! + plan.chunkSize[i]!);
    }
    if (plan.chunkStart.length > 0) {
      const delta = this.out.pos - lo;
      const fd = openSync(file, "r");
      try {
        await this.out.copyFrom(fd, lo, hi - lo, file);
      } finally {
        closeSync(fd);
      }
      for (let i = 0; i < plan.chunkStart.length; i++) {
        const at = plan.chunkStart[i]! + delta;
        plan.chunkOut[i] = at;
        const g = Math.floor(i / plan.kept);
        this.rgStart[g] = Math.min(this.rgStart[g]!, at);
        this.rgCompressed[g] = this.rgCompressed[g]! + plan.chunkSize[i]!;
      }
    }
    this.files[index] = { plan, thrift: raw.thrift };
  }

  /** Writes the footer (files 0..n-1 must all have been appended) and renames the output into place. */
  async finish(): Promise<StitchResult> {
    if (this.closed) throw new Error("ColumnAppender: already finished or aborted");
    try {
      const plans: FilePlan[] = [];
      for (let i = 0; i < this.files.length; i++) {
        const f = this.files[i];
        if (!f) throw new Error(`ColumnAppender: file index ${i} was never appended`);
        plans.push(f.plan);
      }
      if (plans.length === 0) throw new Error("ColumnAppender: no files appended");
      const kv = new Map<string, string | undefined>();
      for (const p of plans) for (const [k, v] of p.kv) if (k !== ARROW_SCHEMA_KEY && !kv.has(k)) kv.set(k, v);
      for (const [k, v] of Object.entries(this.opts.keyValueMetadata ?? {})) kv.set(k, v);
      const thriftOf = new Map(this.files.map((f) => [f.plan, f.thrift]));
      const columns = plans.reduce((n, p) => n + p.kept, 0);
      await writeStitchedFooter(this.out, plans, {
        columns,
        rowGroupStart: (g) => this.rgStart[g]!,
        rowGroupCompressed: (g) => this.rgCompressed[g]!,
        chunkList: (plan, g) => thriftOf.get(plan)!.subarray(plan.chunksAt[2 * g]!, plan.chunksAt[2 * g + 1]!),
        kv,
      });
      await this.out.flush();
      const bytes = this.out.pos;
      // No fsync: validation reads the file back whole and the upload checksums it, and a crash
      // of the container loses its files anyway.
      this.closed = true;
      await this.fh.close();
      await rename(this.tmpPath, this.outPath);
      const first = plans[0]!;
      return { rows: first.numRows, rowGroups: first.rowGroupRows.length, columns, bytes };
    } catch (err) {
      await this.abort();
      throw err;
    }
  }

  /** Removes the partial output. */
  async abort(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      await this.fh.close().catch(() => {});
    }
    await rm(this.tmpPath, { force: true }).catch(() => {});
  }
}
