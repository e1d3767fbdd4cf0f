// The embedded default bucket: a local directory. Objects are written to a temporary name,
// verified by re-reading them, and only then renamed into place, so a reader never sees a
// partial or unverified object and an earlier good object survives a failed upload.
// Custom metadata given to `put` lives in a sidecar JSON file under `.bqx-meta/` (never listed);
// without metadata no sidecar is written and `stat` derives checksums from the bytes.
// It does not retry: src/bucket/retrying.ts wraps it. With FAULT_RATE (testing only) its calls
// fail now and then with an injected retryable fault; a failed `put` or `get` fails after its
// copy is staged, so the retry path also proves a failed attempt leaves nothing behind.
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { access, copyFile, mkdir, open, readFile, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileChecksums } from "../checksum.ts";
import { JobError } from "../errors.ts";
import { FaultInjector, isInjectedFault, type FaultSettings } from "./faults.ts";
import { assertByteRange, type Bucket, type Checksums, type GetResult, type ObjectInfo, type PutResult } from "./port.ts";

const META_DIR = ".bqx-meta";

/** What the sidecar records; `bytes` + `mtimeMs` tell whether it still describes the data file. */
interface Sidecar {
  bytes: number;
  mtimeMs: number;
  crc32c: string;
  sha256: string;
  metadata: Record<string, string>;
}

export class LocalDirectoryBucket implements Bucket {
  readonly location: string;

  /** FAULT_CORRUPT_UPLOADS (testing only): every copy gets one byte flipped, as a bad disk or transfer would. */
  private readonly corruptCopies: boolean;
  /** FAULT_RATE (testing only): seeded transient faults in every call. */
  readonly faults: FaultInjector | undefined;
  /** Once aborted (SIGTERM), `put` stops before renaming anything into place. */
  private readonly signal: AbortSignal | undefined;

  constructor(directory: string, opts: { corruptCopies?: boolean; faults?: FaultSettings | undefined; signal?: AbortSignal | undefined } = {}) {
    this.location = path.resolve(directory);
    this.corruptCopies = opts.corruptCopies ?? false;
    this.faults = opts.faults ? new FaultInjector(opts.faults) : undefined;
    this.signal = opts.signal;
  }

  async checkWritable(): Promise<void> {
    try {
      await mkdir(this.location, { recursive: true });
      await access(this.location, constants.W_OK);
      const probe = path.join(this.location, `.write-probe-${process.pid}-${randomBytes(4).toString("hex")}`);
      try {
        await writeFile(probe, "probe");
        this.faults?.maybeFail("checkWritable", path.basename(this.location), this.location);
      } finally {
        await rm(probe, { force: true });
      }
    } catch (err) {
      if (isInjectedFault(err)) throw err;
      throw new JobError(`output location ${this.location} cannot be written (${(err as Error).message})`, {
        reason: "output-not-writable",
        fix: "set OUTPUT_URI to a directory this user can create and write, or fix its permissions",
        cause: err,
      });
    }
  }

  async put(localPath: string, name: string, expected: Checksums, metadata: Record<string, string> = {}): Promise<PutResult> {
    const target = this.objectPath(name);
    const sidecarPath = this.sidecarPath(name);
    const withSidecar = Object.keys(metadata).length > 0;
    await mkdir(path.dirname(target), { recursive: true });
    if (withSidecar) await mkdir(path.dirname(sidecarPath), { recursive: true });
    const suffix = `.uploading-${process.pid}-${randomBytes(4).toString("hex")}`;
    const staging = `${target}${suffix}`;
    const sidecarStaging = `${sidecarPath}${suffix}`;
    try {
      await copyFile(localPath, staging);
      this.faults?.maybeFail("put", name);
      if (this.corruptCopies) await flipMiddleByte(staging);
      const stored = await fileChecksums(staging);
      if (stored.crc32c !== expected.crc32c || stored.sha256 !== expected.sha256) {
        throw new JobError(
          `checksum mismatch after copying ${localPath} to ${staging}: expected crc32c ${expected.crc32c}, stored ${stored.crc32c}`,
          { reason: "checksum-mismatch", retryable: true, fix: "run again; if it repeats, check the disk behind OUTPUT_URI" },
        );
      }
      const { mtimeMs } = await stat(staging);
      if (withSidecar) {
        const sidecar: Sidecar = { bytes: stored.bytes, mtimeMs, crc32c: stored.crc32c, sha256: stored.sha256, metadata: { ...metadata, sha256: stored.sha256 } };
        await writeFile(sidecarStaging, JSON.stringify(sidecar));
      }
      // Interrupted (SIGTERM): the verified copy is dropped rather than replacing the object, so
      // an interrupted run never changes what the bucket holds.
      this.signal?.throwIfAborted();
      // Data first, then its sidecar: in between, `stat` sees a sidecar whose size/mtime do not
      // match the data and recomputes from the data itself, so it never reports stale checksums.
      await rename(staging, target);
      if (withSidecar) await rename(sidecarStaging, sidecarPath);
      else await rm(sidecarPath, { force: true });
      return { uri: target, bytes: stored.bytes, checksums: { crc32c: stored.crc32c, sha256: stored.sha256 }, generation: generationOf(mtimeMs) };
    } finally {
      await rm(staging, { force: true });
      await rm(sidecarStaging, { force: true });
    }
  }

  async stat(name: string): Promise<ObjectInfo | undefined> {
    const target = this.objectPath(name);
    this.faults?.maybeFail("stat", name);
    let info;
    try {
      info = await stat(target);
    } catch {
      return undefined;
    }
    const sidecar = await this.readSidecar(name);
    if (sidecar && sidecar.bytes === info.size && sidecar.mtimeMs === info.mtimeMs) {
      return { name, bytes: sidecar.bytes, crc32c: sidecar.crc32c, generation: generationOf(info.mtimeMs), metadata: sidecar.metadata };
    }
    // Put without metadata, or written behind the bucket's back: describe the bytes as they are.
    const sums = await fileChecksums(target);
    return { name, bytes: sums.bytes, crc32c: sums.crc32c, generation: generationOf(info.mtimeMs), metadata: { sha256: sums.sha256 } };
  }

  async get(name: string, localPath: string): Promise<GetResult> {
    const source = this.objectPath(name);
    const info = await this.stat(name);
    if (!info) {
      throw new JobError(`cannot download ${source}: no such object`, { reason: "object-not-found", fix: "check the object name; list the bucket to see what is there" });
    }
    await mkdir(path.dirname(path.resolve(localPath)), { recursive: true });
    const staging = `${localPath}.download-${process.pid}-${randomBytes(4).toString("hex")}`;
    try {
      await copyFile(source, staging);
      this.faults?.maybeFail("get", name);
      const got = await fileChecksums(staging);
      if (got.crc32c !== info.crc32c || got.bytes !== info.bytes) {
        throw new JobError(`checksum mismatch downloading ${source}: object crc32c ${info.crc32c} (${info.bytes} bytes), received ${got.crc32c} (${got.bytes} bytes)`, {
          reason: "checksum-mismatch",
          retryable: true,
          fix: "run again; if it repeats, the stored object is damaged: delete it so it is rebuilt",
        });
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
    this.faults?.maybeFail("readRange", name);
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
    this.faults?.maybeFail("list", prefix);
    const names: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const entry of entries) {
        const full = path.join(dir, entry.name);
        if (entry.isDirectory()) {
          if (!(dir === this.location && entry.name === META_DIR)) await walk(full);
        } else if (!entry.name.includes(".uploading-")) {
          const rel = path.relative(this.location, full).split(path.sep).join("/");
          if (rel.startsWith(prefix)) names.push(rel);
        }
      }
    };
    await walk(this.location);
    return names.sort();
  }

  async delete(name: string): Promise<void> {
    const target = this.objectPath(name);
    this.faults?.maybeFail("delete", name);
    await rm(target, { force: true });
    await rm(this.sidecarPath(name), { force: true });
  }

  async size(name: string): Promise<number | undefined> {
    try {
      return (await stat(this.objectPath(name))).size;
    } catch {
      return undefined;
    }
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

async function flipMiddleByte(file: string): Promise<void> {
  const handle = await open(file, "r+");
  try {
    const at = Math.floor((await handle.stat()).size / 2);
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, at);
    byte[0] = byte[0]! ^ 0xff;
    await handle.write(byte, 0, 1, at);
  } finally {
    await handle.close();
  }
}

/** A stand-in for Cloud Storage's generation: changes whenever the object is replaced. */
function generationOf(mtimeMs: number): string {
  return String(Math.round(mtimeMs * 1000));
}
