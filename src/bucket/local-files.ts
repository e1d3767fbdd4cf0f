// The local directory bucket's file work (local.ts keeps the object semantics): copying byte
// ranges with their checksums computed on the way, concatenating pinned sources, walking the
// directory, and telling a dead writer's temporary copy from a live one's.
import { createHash } from "node:crypto";
import type { Stats } from "node:fs";
import { open, readdir, stat, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { crc32c } from "@node-rs/crc32";
import { JobError } from "../errors.ts";
import { assertByteRange, type ByteRange } from "./port.ts";

/** `compose` copies through one buffer of this size, whatever the sources' sizes. */
const COMPOSE_BUFFER_BYTES = 8 * 1024 * 1024;

/**
 * Concatenates the sources into `staging`, computing the CRC32C of exactly the bytes written.
 * Each source is opened and its generation checked before it is read, and checked again after:
 * a source replaced or rewritten meanwhile fails the compose (`what` names it).
 */
export async function concatenate(
  sources: readonly { path: string; generation: string }[],
  staging: string,
  what: string,
  opts: { corruptAt: number | undefined; signal: AbortSignal | undefined },
): Promise<{ bytes: number; crc: number }> {
  const pieces: CopyPiece[] = sources.map((source) => {
    const changed = (now?: Stats) => sourceChanged(what, source.path, source.generation, now ? generationOf(now.mtimeMs) : undefined);
    let before: Stats | undefined;
    return {
      path: source.path,
      start: 0,
      end: undefined,
      opened: async (input) => {
        const opened = await input.stat();
        before = opened;
        if (generationOf(opened.mtimeMs) !== source.generation) throw changed(opened);
        return opened.size;
      },
      done: async (input) => {
        const after = await input.stat();
        const now = await stat(source.path).catch(() => undefined);
        if (after.mtimeMs !== before!.mtimeMs || now?.ino !== before!.ino || now.mtimeMs !== before!.mtimeMs) throw changed(now);
      },
      missing: () => changed(undefined),
    };
  });
  const out = await open(staging, "w");
  try {
    return await copyInto(out, 0, pieces, { corruptAt: opts.corruptAt, sha256: false, signal: opts.signal });
  } finally {
    await out.close();
  }
}

/** Calls `visit` with every file below `dir`, descending into the directories `descend` allows; a missing `dir` has none. */
export async function walkFiles(dir: string, descend: (dir: string, name: string) => boolean, visit: (file: string) => void): Promise<void> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (descend(dir, entry.name)) await walkFiles(full, descend, visit);
    } else {
      visit(full);
    }
  }
}

/**
 * Whether the process that named a temporary copy is gone: a copy with this process's pid that it
 * did not make is from an earlier container (pids repeat there); a live process of another pid on
 * this host may still rename its copy into place.
 */
export function writerIsGone(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ESRCH";
  }
}

export function sourceChanged(what: string, sourcePath: string, pinned: string, now: string | undefined): JobError {
  return new JobError(
    `cannot ${what}: source ${sourcePath} is no longer generation ${pinned} (${now ? `now ${now}` : "deleted"}); it was replaced or deleted after its generation was read`,
    {
      reason: "source-changed",
      fix: "stage that object again and use its new generation",
    },
  );
}

/** Refuses a range past the end of the local file before anything is copied. */
export async function assertRangeOfFile(localPath: string, range: ByteRange): Promise<void> {
  assertByteRange(localPath, range.start, range.end);
  const { size } = await stat(localPath);
  if (range.end > size)
    throw new JobError(`range [${range.start}, ${range.end}) of ${localPath} is past its end (${size} bytes)`, { reason: "range-out-of-bounds" });
}

/** A byte range of a file to copy; `end` undefined: to the end of the file (its size, which `opened` may return). */
interface CopyPiece {
  path: string;
  start: number;
  end: number | undefined;
  /** Checks the file once open; returns its size. */
  opened?: (input: FileHandle) => Promise<number>;
  /** Checks the file once read, before it is closed. */
  done?: (input: FileHandle) => Promise<void>;
  /** The error for a file that cannot be opened. */
  missing?: () => Error;
}

/**
 * Copies the pieces, in order, to `out` from `at`, with the reads of the next block overlapping
 * the write of the current one (two buffers), and returns the CRC32C (and SHA-256 when asked) of
 * the bytes written. `corruptAt` (FAULT_CORRUPT_UPLOADS) flips the byte at that output offset on
 * the way, as a bad disk or transfer would, so the checksums show it.
 */
export async function copyInto(
  out: FileHandle,
  at: number,
  pieces: readonly CopyPiece[],
  opts: { corruptAt: number | undefined; sha256: boolean; signal: AbortSignal | undefined },
): Promise<{ bytes: number; crc: number; sha256?: string }> {
  const buffers = [Buffer.allocUnsafe(COMPOSE_BUFFER_BYTES), Buffer.allocUnsafe(COMPOSE_BUFFER_BYTES)];
  const sha = opts.sha256 ? createHash("sha256") : undefined;
  let crc = 0;
  let bytes = 0;
  let turn = 0;
  let writing: Promise<void> = Promise.resolve();
  const write = async (chunk: Buffer, position: number) => {
    for (let done = 0; done < chunk.length;) done += (await out.write(chunk, done, chunk.length - done, position + done)).bytesWritten;
  };
  for (const piece of pieces) {
    const input = await open(piece.path, "r").catch((err: unknown) => {
      throw piece.missing?.() ?? err;
    });
    try {
      const size = (await piece.opened?.(input)) ?? (await input.stat()).size;
      const end = piece.end ?? size;
      for (let position = piece.start; position < end;) {
        opts.signal?.throwIfAborted();
        const buffer = buffers[turn]!;
        turn ^= 1;
        const { bytesRead } = await input.read(buffer, 0, Math.min(buffer.length, end - position), position);
        if (bytesRead === 0) throw new Error(`${piece.path}: unexpected end of file at ${position} (expected ${end} bytes)`);
        // The other buffer's write must be done before this one is filled again, two turns on.
        await writing;
        const chunk = buffer.subarray(0, bytesRead);
        if (opts.corruptAt !== undefined && opts.corruptAt >= bytes && opts.corruptAt < bytes + bytesRead) chunk[opts.corruptAt - bytes]! ^= 0xff;
        crc = crc32c(chunk, crc);
        sha?.update(chunk);
        writing = write(chunk, at + bytes);
        position += bytesRead;
        bytes += bytesRead;
      }
      await piece.done?.(input);
    } finally {
      await input.close();
    }
  }
  await writing;
  return { bytes, crc, ...(sha ? { sha256: sha.digest("hex") } : {}) };
}

/** A stand-in for Cloud Storage's generation: changes whenever the object is replaced. */
export function generationOf(mtimeMs: number): string {
  return String(Math.round(mtimeMs * 1000));
}

/** The data file of a pinned source, refused when it is gone or another generation. */
export async function pinnedStat(sourcePath: string, generation: string, what: string): Promise<Stats> {
  const info = await stat(sourcePath).catch(() => undefined);
  if (!info || generationOf(info.mtimeMs) !== generation) throw sourceChanged(what, sourcePath, generation, info ? generationOf(info.mtimeMs) : undefined);
  return info;
}

/** `ifGenerationMatch` on the object at `target` ("0": must not exist). Not atomic with the rename after it: one writer per directory. */
export async function checkGeneration(target: string, ifGenerationMatch: string | undefined): Promise<void> {
  if (ifGenerationMatch === undefined) return;
  const info = await stat(target).catch(() => undefined);
  const current = info ? generationOf(info.mtimeMs) : "0";
  if (current !== ifGenerationMatch) {
    throw new JobError(
      `cannot write ${target}: another writer changed it meanwhile (generation ${current === "0" ? "none" : current}, expected ${ifGenerationMatch === "0" ? "none" : ifGenerationMatch})`,
      {
        reason: "precondition-failed",
        fix: "make sure only one execution writes this pair's objects at a time, then run again",
      },
    );
  }
}
