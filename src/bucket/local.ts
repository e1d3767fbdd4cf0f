// The embedded default bucket: a local directory. Objects are written to a temporary name,
// verified by re-reading them, and only then renamed into place, so a reader never sees a
// partial or unverified object and an earlier good object survives a failed upload.
// Custom metadata given to `put` lives in a sidecar JSON file under `.bqx-meta/` (never listed);
// without metadata no sidecar is written and `stat` derives checksums from the bytes. A composite
// always has a sidecar (its crc32c, componentCount and metadata).
// `compose` concatenates the sources into a temporary name and renames it into place, so the
// pipeline that composes in Cloud Storage runs unchanged here; `move` is a rename. A generation
// is the data file's mtime in microseconds: a replaced file has another one (a rename keeps it).
// It does not retry: src/bucket/retrying.ts wraps it (and src/faults.ts, with FAULT_RATE).
import { randomBytes } from "node:crypto";
import { constants, type Stats } from "node:fs";
import { access, copyFile, mkdir, open, readFile, rename, rm, rmdir, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { crc32cBase64, fileChecksums } from "../checksum.ts";
import { assertRangeOfFile, checkGeneration, concatenate, copyInto, generationOf, pinnedStat, walkFiles, writerIsGone } from "./local-files.ts";
import { JobError } from "../errors.ts";
import {
  assertByteRange,
  assertSourceCount,
  type Bucket,
  type ByteRange,
  type Checksums,
  type ComposeOptions,
  type GetResult,
  type ObjectInfo,
  type PutResult,
  type SourceObject,
} from "./port.ts";

const META_DIR = ".bqx-meta";

/** What the sidecar records; `bytes` + `mtimeMs` tell whether it still describes the data file. */
interface Sidecar {
  bytes: number;
  mtimeMs: number;
  crc32c: string;
  sha256?: string;
  metadata: Record<string, string>;
  /** Composites only. */
  componentCount?: number;
}

export interface LocalDirectoryBucketOptions {
  /** FAULT_CORRUPT_UPLOADS (testing only). */
  corruptCopies?: boolean;
  signal?: AbortSignal | undefined;
  /** Sources per `compose`: unlimited (one concatenation) unless a test mirrors Cloud Storage's 32. */
  maxComposeSources?: number;
}

export class LocalDirectoryBucket implements Bucket {
  readonly location: string;
  readonly maxComposeSources: number;

  /** FAULT_CORRUPT_UPLOADS (testing only): every copy gets one byte flipped, as a bad disk or transfer would. */
  private readonly corruptCopies: boolean;
  /** Once aborted (SIGTERM), `put` stops before renaming anything into place. */
  private readonly signal: AbortSignal | undefined;

  /** Suffixes of the temporary copies this object has made, so `sweep` never takes one of them. */
  private readonly ownSuffixes = new Set<string>();

  constructor(directory: string, opts: LocalDirectoryBucketOptions = {}) {
    this.location = path.resolve(directory);
    this.corruptCopies = opts.corruptCopies ?? false;
    this.signal = opts.signal;
    this.maxComposeSources = opts.maxComposeSources ?? Number.POSITIVE_INFINITY;
  }

  async checkWritable(): Promise<void> {
    try {
      await mkdir(this.location, { recursive: true });
      await access(this.location, constants.W_OK);
      const probe = path.join(this.location, `.write-probe-${process.pid}-${randomBytes(4).toString("hex")}`);
      try {
        await writeFile(probe, "probe");
      } finally {
        await rm(probe, { force: true });
      }
    } catch (err) {
      throw new JobError(`output location ${this.location} cannot be written (${(err as Error).message})`, {
        reason: "output-not-writable",
        fix: "set OUTPUT_URI to a directory this user can create and write, or fix its permissions",
        cause: err,
      });
    }
  }

  async put(localPath: string, name: string, expected: Checksums, metadata: Record<string, string> = {}, range?: ByteRange): Promise<PutResult> {
    const target = this.objectPath(name);
    if (range) await assertRangeOfFile(localPath, range);
    const sidecarPath = this.sidecarPath(name);
    const withSidecar = Object.keys(metadata).length > 0;
    await mkdir(path.dirname(target), { recursive: true });
    if (withSidecar) await mkdir(path.dirname(sidecarPath), { recursive: true });
    const suffix = this.tempSuffix();
    const staging = `${target}${suffix}`;
    const sidecarStaging = `${sidecarPath}${suffix}`;
    try {
      // One pass: the checksums are of the bytes as written (a flip injected on the way, as
      // FAULT_CORRUPT_UPLOADS does, shows), so no second read of the copy is needed.
      const size = range ? range.end - range.start : (await stat(localPath)).size;
      const out = await open(staging, "w");
      let stored: { crc32c: string; bytes: number; sha256?: string };
      try {
        const copied = await copyInto(out, 0, [{ path: localPath, start: range?.start ?? 0, end: (range?.start ?? 0) + size }], {
          corruptAt: this.corruptCopies && size > 0 ? Math.floor(size / 2) : undefined,
          sha256: expected.sha256 !== undefined,
          signal: this.signal,
        });
        stored = { crc32c: crc32cBase64(copied.crc), bytes: copied.bytes, ...(copied.sha256 !== undefined ? { sha256: copied.sha256 } : {}) };
      } finally {
        await out.close();
      }
      if (stored.crc32c !== expected.crc32c || (expected.sha256 !== undefined && stored.sha256 !== expected.sha256)) {
        const what = range ? `bytes [${range.start}, ${range.end}) of ${localPath}` : localPath;
        throw new JobError(`checksum mismatch after copying ${what} to ${staging}: expected crc32c ${expected.crc32c}, stored ${stored.crc32c}`, {
          reason: "checksum-mismatch",
          retryable: true,
          fix: "run again; if it repeats, check the disk behind OUTPUT_URI",
        });
      }
      const { mtimeMs } = await stat(staging);
      if (withSidecar) {
        const recorded: { sha256?: string } = expected.sha256 !== undefined ? { sha256: stored.sha256 } : {};
        const sidecar: Sidecar = { bytes: stored.bytes, mtimeMs, crc32c: stored.crc32c, ...recorded, metadata: { ...metadata, ...recorded } };
        await writeFile(sidecarStaging, JSON.stringify(sidecar));
      }
      // Interrupted (SIGTERM): the verified copy is dropped rather than replacing the object, so
      // an interrupted run never changes what the bucket holds.
      this.signal?.throwIfAborted();
      // The sidecar first, then the data: the object appears with its metadata, as on Cloud
      // Storage. In between, `stat` sees a sidecar whose size/mtime do not match the data still
      // there (or no data) and describes the data itself, so it never reports stale checksums.
      if (withSidecar) await rename(sidecarStaging, sidecarPath);
      else await rm(sidecarPath, { force: true });
      await rename(staging, target);
      return { uri: target, bytes: stored.bytes, checksums: { crc32c: stored.crc32c, sha256: stored.sha256 }, generation: generationOf(mtimeMs) };
    } finally {
      await rm(staging, { force: true });
      await rm(sidecarStaging, { force: true });
    }
  }

  async stat(name: string): Promise<ObjectInfo | undefined> {
    const target = this.objectPath(name);
    let info;
    try {
      info = await stat(target);
    } catch {
      return undefined;
    }
    return this.describe(name, info);
  }

  async get(name: string, localPath: string): Promise<GetResult> {
    const source = this.objectPath(name);
    const info = await this.stat(name);
    if (!info) {
      throw new JobError(`cannot download ${source}: no such object`, {
        reason: "object-not-found",
        fix: "check the object name; list the bucket to see what is there",
      });
    }
    await mkdir(path.dirname(path.resolve(localPath)), { recursive: true });
    const staging = `${localPath}.download-${process.pid}-${randomBytes(4).toString("hex")}`;
    try {
      await copyFile(source, staging);
      const got = await fileChecksums(staging);
      if (got.crc32c !== info.crc32c || got.bytes !== info.bytes) {
        throw new JobError(
          `checksum mismatch downloading ${source}: object crc32c ${info.crc32c} (${info.bytes} bytes), received ${got.crc32c} (${got.bytes} bytes)`,
          {
            reason: "checksum-mismatch",
            retryable: true,
            fix: "run again; if it repeats, the stored object is damaged: delete it so it is rebuilt",
          },
        );
      }
      await rename(staging, localPath);
      return { uri: source, path: localPath, bytes: got.bytes, checksums: { crc32c: got.crc32c, sha256: got.sha256 }, generation: info.generation };
    } finally {
      await rm(staging, { force: true });
    }
  }

  async readRange(name: string, start: number, end: number): Promise<Buffer> {
    const source = this.objectPath(name);
    assertByteRange(source, start, end);
    let handle;
    try {
      handle = await open(source, "r");
    } catch (err) {
      throw new JobError(`cannot read ${source}: no such object`, { reason: "object-not-found", cause: err });
    }
    try {
      const buf = Buffer.alloc(end - start);
      const { bytesRead } = await handle.read(buf, 0, buf.length, start);
      if (bytesRead !== buf.length) {
        throw new JobError(`range ${start}-${end} of ${source} is past its end (${start + bytesRead} bytes available)`, { reason: "range-out-of-bounds" });
      }
      return buf;
    } finally {
      await handle.close();
    }
  }

  async list(prefix = ""): Promise<string[]> {
    const names: string[] = [];
    await walkFiles(
      this.location,
      (dir, name) => dir !== this.location || name !== META_DIR,
      (file) => {
        if (path.basename(file).includes(".uploading-")) return;
        const rel = path.relative(this.location, file).split(path.sep).join("/");
        if (rel.startsWith(prefix)) names.push(rel);
      },
    );
    return names.sort();
  }

  async delete(name: string): Promise<void> {
    const target = this.objectPath(name);
    await rm(target, { force: true });
    await rm(this.sidecarPath(name), { force: true });
    // Object stores have no directories: one left empty by the last object in it goes too.
    await this.pruneEmptyParents(target);
    await this.pruneEmptyParents(this.sidecarPath(name));
  }

  /** A name suffix for a temporary copy: `.uploading-<pid>-<random>`, never listed as an object. */
  private tempSuffix(): string {
    const suffix = `.uploading-${process.pid}-${randomBytes(4).toString("hex")}`;
    this.ownSuffixes.add(suffix);
    return suffix;
  }

  async sweep(prefix: string): Promise<number> {
    const segments = prefix.split("/").filter(Boolean);
    const roots = [path.join(this.location, ...segments), path.join(this.location, META_DIR, ...segments)];
    const abandoned: string[] = [];
    for (const root of roots) {
      if (root !== this.location && !root.startsWith(this.location + path.sep)) continue;
      await walkFiles(
        root,
        () => true,
        (file) => {
          const writer = /(\.uploading-(\d+)-[0-9a-f]+)$/.exec(file);
          if (writer && !this.ownSuffixes.has(writer[1]!) && writerIsGone(Number(writer[2]))) abandoned.push(file);
        },
      );
    }
    for (const file of abandoned) {
      await rm(file, { force: true });
      await this.pruneEmptyParents(file);
    }
    return abandoned.length;
  }

  private async pruneEmptyParents(file: string): Promise<void> {
    for (let dir = path.dirname(file); dir.startsWith(this.location + path.sep); dir = path.dirname(dir)) {
      try {
        await rmdir(dir);
      } catch {
        return; // not empty (or gone): its parents are not empty either
      }
    }
  }

  async compose(sources: readonly SourceObject[], destination: string, opts: ComposeOptions = {}): Promise<ObjectInfo> {
    const target = this.objectPath(destination);
    assertSourceCount(sources.length, this.maxComposeSources, target);
    // Every source's generation before any byte is copied, so a stale last part fails at once.
    const pinned: Stats[] = [];
    for (const source of sources) pinned.push(await pinnedStat(this.objectPath(source.name), source.generation, `compose ${target}`));
    await checkGeneration(this.objectPath(destination), opts.ifGenerationMatch);
    let componentCount = 0;
    for (const [i, source] of sources.entries()) componentCount += (await this.currentSidecar(source.name, pinned[i]!))?.componentCount ?? 1;
    const sidecarPath = this.sidecarPath(destination);
    await mkdir(path.dirname(target), { recursive: true });
    await mkdir(path.dirname(sidecarPath), { recursive: true });
    const suffix = this.tempSuffix();
    const staging = `${target}${suffix}`;
    const sidecarStaging = `${sidecarPath}${suffix}`;
    try {
      const totalBytes = pinned.reduce((n, info) => n + info.size, 0);
      const pinnedSources = sources.map((source) => ({ path: this.objectPath(source.name), generation: source.generation }));
      const corruptAt = this.corruptCopies && totalBytes > 0 ? Math.floor(totalBytes / 2) : undefined;
      const { bytes, crc } = await concatenate(pinnedSources, staging, `compose ${target}`, { corruptAt, signal: this.signal });
      const stored = crc32cBase64(crc);
      if (opts.expected && (bytes !== opts.expected.bytes || stored !== opts.expected.crc32c)) {
        throw new JobError(
          `composing ${target} from ${sources.length} sources gave ${bytes} bytes with crc32c ${stored}, expected ${opts.expected.bytes} bytes with crc32c ${opts.expected.crc32c}`,
          { reason: "checksum-mismatch", retryable: true, fix: "run again; if it repeats, the parts or their predicted crc32c are wrong: stage them again" },
        );
      }
      const { mtimeMs } = await stat(staging);
      const metadata = opts.metadata ?? {};
      const sidecar: Sidecar = { bytes, mtimeMs, crc32c: stored, metadata, componentCount };
      await writeFile(sidecarStaging, JSON.stringify(sidecar));
      // Interrupted (SIGTERM): the composite is dropped, never committed.
      this.signal?.throwIfAborted();
      // Checked again just before the rename: another writer may have come in during the copy.
      await checkGeneration(this.objectPath(destination), opts.ifGenerationMatch);
      // Sidecar first: the composite appears with its metadata (see put).
      await rename(sidecarStaging, sidecarPath);
      await rename(staging, target);
      return { name: destination, bytes, crc32c: stored, generation: generationOf(mtimeMs), metadata, componentCount };
    } finally {
      await rm(staging, { force: true });
      await rm(sidecarStaging, { force: true });
    }
  }

  async move(source: SourceObject, destination: string, opts: ComposeOptions = {}): Promise<ObjectInfo> {
    const from = this.objectPath(source.name);
    const to = this.objectPath(destination);
    if (from === to) throw new JobError(`cannot move ${from} onto itself`, { reason: "bad-object-name" });
    const info = await pinnedStat(this.objectPath(source.name), source.generation, `move ${from} to ${to}`);
    await checkGeneration(this.objectPath(destination), opts.ifGenerationMatch);
    const sidecar = await this.currentSidecar(source.name, info);
    const crc = sidecar?.crc32c ?? (opts.expected || opts.metadata ? (await fileChecksums(from)).crc32c : undefined);
    if (opts.expected && (info.size !== opts.expected.bytes || crc !== opts.expected.crc32c)) {
      throw new JobError(
        `cannot move ${from} to ${to}: it has ${info.size} bytes with crc32c ${crc}, expected ${opts.expected.bytes} bytes with crc32c ${opts.expected.crc32c}`,
        {
          reason: "checksum-mismatch",
          retryable: true,
          fix: "stage the object again; if it repeats, check the disk behind OUTPUT_URI",
        },
      );
    }
    const sourceSidecar = this.sidecarPath(source.name);
    const targetSidecar = this.sidecarPath(destination);
    const sidecarStaging = `${targetSidecar}${this.tempSuffix()}`;
    await mkdir(path.dirname(to), { recursive: true });
    await mkdir(path.dirname(targetSidecar), { recursive: true });
    try {
      // New metadata means a new sidecar; otherwise the source's own sidecar is renamed along.
      if (opts.metadata) {
        const next: Sidecar = { ...(sidecar ?? { bytes: info.size, mtimeMs: info.mtimeMs, crc32c: crc! }), metadata: opts.metadata };
        await writeFile(sidecarStaging, JSON.stringify(next));
      }
      this.signal?.throwIfAborted();
      await checkGeneration(this.objectPath(destination), opts.ifGenerationMatch);
      // New metadata goes first, so the destination appears with it (see put; the rename keeps
      // the mtime the sidecar records). The source's own sidecar follows its data, so the source
      // keeps describing itself until it is gone.
      if (opts.metadata) await rename(sidecarStaging, targetSidecar);
      await rename(from, to);
      if (!opts.metadata) {
        if (sidecar) await rename(sourceSidecar, targetSidecar);
        else await rm(targetSidecar, { force: true });
      }
      await rm(sourceSidecar, { force: true });
    } finally {
      await rm(sidecarStaging, { force: true });
    }
    return this.describe(destination, await stat(to));
  }

  /** The object whose data file has `info`, from its sidecar when that still describes it. */
  private async describe(name: string, info: Stats): Promise<ObjectInfo> {
    const sidecar = await this.currentSidecar(name, info);
    if (sidecar) {
      const composite = sidecar.componentCount !== undefined ? { componentCount: sidecar.componentCount } : {};
      return { name, bytes: sidecar.bytes, crc32c: sidecar.crc32c, generation: generationOf(info.mtimeMs), metadata: sidecar.metadata, ...composite };
    }
    // Put without metadata, or written behind the bucket's back: describe the bytes as they are.
    const sums = await fileChecksums(this.objectPath(name));
    return { name, bytes: sums.bytes, crc32c: sums.crc32c, generation: generationOf(info.mtimeMs), metadata: { sha256: sums.sha256 } };
  }

  /** The sidecar of `name` if it describes the data file with `info` (same size and mtime). */
  private async currentSidecar(name: string, info: Stats): Promise<Sidecar | undefined> {
    const sidecar = await this.readSidecar(name);
    return sidecar && sidecar.bytes === info.size && sidecar.mtimeMs === info.mtimeMs ? sidecar : undefined;
  }

  private async readSidecar(name: string): Promise<Sidecar | undefined> {
    try {
      return JSON.parse(await readFile(this.sidecarPath(name), "utf8")) as Sidecar;
    } catch {
      return undefined;
    }
  }

  private sidecarPath(name: string): string {
    return path.join(this.location, META_DIR, `${path.relative(this.location, this.objectPath(name))}.json`);
  }

  private objectPath(name: string): string {
    const target = path.resolve(this.location, name);
    if (!target.startsWith(this.location + path.sep) || path.relative(this.location, target).split(path.sep)[0] === META_DIR) {
      throw new JobError(`object name ${JSON.stringify(name)} escapes the bucket directory`, { reason: "bad-object-name" });
    }
    return target;
  }
}
