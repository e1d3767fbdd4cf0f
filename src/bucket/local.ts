// The embedded default bucket: a local directory. Objects are written to a temporary name,
// verified by re-reading them, and only then renamed into place, so a reader never sees a
// partial or unverified object and an earlier good object survives a failed upload.
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { access, copyFile, mkdir, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileChecksums } from "../checksum.ts";
import { JobError } from "../errors.ts";
import type { Bucket, Checksums, PutResult } from "./port.ts";

export class LocalDirectoryBucket implements Bucket {
  readonly location: string;

  constructor(directory: string) {
    this.location = path.resolve(directory);
  }

  async checkWritable(): Promise<void> {
    try {
      await mkdir(this.location, { recursive: true });
      await access(this.location, constants.W_OK);
      const probe = path.join(this.location, `.write-probe-${process.pid}-${randomBytes(4).toString("hex")}`);
      await writeFile(probe, "probe");
      await rm(probe, { force: true });
    } catch (err) {
      throw new JobError(`output location ${this.location} cannot be written (${(err as Error).message})`, {
        reason: "output-not-writable",
        fix: "set OUTPUT_URI to a directory this user can create and write, or fix its permissions",
        cause: err,
      });
    }
  }

  async put(localPath: string, name: string, expected: Checksums): Promise<PutResult> {
    const target = this.objectPath(name);
    await mkdir(path.dirname(target), { recursive: true });
    const staging = `${target}.uploading-${process.pid}-${randomBytes(4).toString("hex")}`;
    try {
      await copyFile(localPath, staging);
      const stored = await fileChecksums(staging);
      if (stored.crc32c !== expected.crc32c || stored.sha256 !== expected.sha256) {
        throw new JobError(
          `checksum mismatch after copying ${localPath} to ${staging}: expected crc32c ${expected.crc32c}, stored ${stored.crc32c}`,
          { reason: "checksum-mismatch", retryable: true, fix: "run again; if it repeats, check the disk behind OUTPUT_URI" },
        );
      }
      await rename(staging, target);
      return { uri: target, bytes: stored.bytes, checksums: { crc32c: stored.crc32c, sha256: stored.sha256 } };
    } finally {
      await rm(staging, { force: true });
    }
  }

  async list(prefix = ""): Promise<string[]> {
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
        if (entry.isDirectory()) await walk(full);
        else if (!entry.name.includes(".uploading-")) {
          const rel = path.relative(this.location, full).split(path.sep).join("/");
          if (rel.startsWith(prefix)) names.push(rel);
        }
      }
    };
    await walk(this.location);
    return names.sort();
  }

  async delete(name: string): Promise<void> {
    await rm(this.objectPath(name), { force: true });
  }

  async size(name: string): Promise<number | undefined> {
    try {
      return (await stat(this.objectPath(name))).size;
    } catch {
      return undefined;
    }
  }

  private objectPath(name: string): string {
    const target = path.resolve(this.location, name);
    if (!target.startsWith(this.location + path.sep)) {
      throw new JobError(`object name ${JSON.stringify(name)} escapes the bucket directory`, { reason: "bad-object-name" });
    }
    return target;
  }
}
