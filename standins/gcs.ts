// A local stand-in for the Cloud Storage JSON API v1: the subset @google-cloud/storage uses to
// stat, list, download (with Range), delete, upload (multipart and resumable) and compose objects,
// with the wire semantics that matter for correctness: generations and `ifGenerationMatch` (412),
// server-side CRC32C/MD5 verification of declared hashes (400), resumable sessions that persist
// only whole 256 KiB blocks of a non-final chunk and answer `308 Resume Incomplete` with a
// `Range` header, paged listings, and compose as Cloud Storage documents it (see `compose` below).
// Faults (429/5xx, 401/403, corrupted bytes, latency, answers lost after the request took
// effect) are injected on demand with a seeded RNG so runs are reproducible.
// Plain node:http with no test-runner APIs, so `npm run standins` can start it in its own process.
import { createHash, randomBytes } from "node:crypto";
import { closeSync, createReadStream, createWriteStream, openSync } from "node:fs";
import { mkdir, mkdtemp, open, rename, rm, stat, truncate, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { crc32c } from "@node-rs/crc32";
import { STANDIN_ACCESS_TOKEN } from "../src/gcp/auth.ts";
import { rng as seeded } from "./rng.ts";

/** What a request does, for targeting faults and reading the request log. */
export type GcsRequestKind =
  "bucket" | "list" | "metadata" | "media" | "delete" | "upload-start" | "upload-chunk" | "upload-status" | "upload-simple" | "compose" | "other";

export interface GcsFaultConfig {
  /** Fraction of matching requests answered with `failStatus` (seeded, reproducible). */
  failRate?: number;
  failStatus?: number;
  /** Which requests `failRate` applies to; all kinds when omitted. */
  failKinds?: readonly GcsRequestKind[];
  seed?: number;
  /** Added before every request is handled (only those of `latencyKinds`, when given). */
  latencyMs?: number;
  latencyKinds?: readonly GcsRequestKind[];
  /** Finalized uploads (next N; Infinity = all) whose stored bytes get one byte flipped. */
  corruptUploads?: number;
  /** Media downloads (next N) whose response gets one byte flipped. */
  corruptDownloads?: number;
}

export interface StoredObject {
  bucket: string;
  name: string;
  generation: string;
  size: number;
  crc32c: string;
  /** Absent on composite objects: Cloud Storage keeps no MD5 for them. */
  md5Hash?: string;
  contentType: string;
  /** STANDARD unless the upload or the bucket said otherwise. */
  storageClass: string;
  /** Composite objects only: the plain objects concatenated into it, at any depth. */
  componentCount?: number;
  metadata: Record<string, string>;
  timeCreated: string;
  /** Where the bytes are on disk. */
  file: string;
}

export interface GcsRequestRecord {
  method: string;
  /** Decoded path without the query, e.g. /storage/v1/b/my-bucket/o/a/b.parquet */
  path: string;
  query: Record<string, string>;
  kind: GcsRequestKind;
  status: number;
  /** The Content-Range of an upload PUT or the Range of a download, when sent. */
  range?: string;
  /** True when the answer was an injected fault. */
  injected: boolean;
  /** What credentials came with the request (never the token itself). */
  auth: "standin-token" | "other" | "none";
}

export interface GcsStandInOptions {
  host?: string;
  port?: number;
  /** Directory for object bytes; a fresh temp directory (removed on close) when omitted. */
  dir?: string;
  buckets?: readonly string[];
  faults?: GcsFaultConfig;
  /** Cloud Storage caps a listing page at 1,000 items whatever maxResults asks for. */
  maxListPageSize?: number;
}

export interface GcsStandIn {
  /** Pass as `apiEndpoint`, e.g. http://127.0.0.1:40123 */
  endpoint: string;
  /** `storageClass` is the bucket's default for new objects (STANDARD when omitted). */
  createBucket(name: string, opts?: { storageClass?: string }): void;
  /** Writes an object directly, as another writer would (new generation). */
  putObject(bucket: string, name: string, data: Buffer, metadata?: Record<string, string>, opts?: { storageClass?: string }): Promise<StoredObject>;
  getObject(bucket: string, name: string): StoredObject | undefined;
  /** Names of the objects in `bucket` starting with `prefix`, sorted. */
  listObjects(bucket: string, prefix?: string): string[];
  readObject(bucket: string, name: string): Promise<Buffer>;
  faults: GcsFaults;
  requests: GcsRequestRecord[];
  close(): Promise<void>;
}

/** Cloud Storage persists resumable data in blocks of this size unless the chunk is the last. */
export const RESUMABLE_BLOCK_BYTES = 256 * 1024;
const PRINCIPAL = "standin-sa@bqx-ml.iam.gserviceaccount.com";
/** Sources one compose may name (https://cloud.google.com/storage/docs/composite-objects). */
export const MAX_COMPOSE_SOURCES = 32;
/** Where Cloud Storage's componentCount saturates (same page). */
const MAX_COMPONENT_COUNT = 2_147_483_647;
const REASONS: Record<number, string> = {
  400: "invalid",
  401: "authError",
  403: "forbidden",
  404: "notFound",
  410: "gone",
  412: "conditionNotMet",
  416: "requestedRangeNotSatisfiable",
  429: "rateLimitExceeded",
  500: "internalError",
  502: "badGateway",
  503: "backendError",
  504: "gatewayTimeout",
};
const PERMISSION: Partial<Record<GcsRequestKind, string>> = {
  bucket: "storage.buckets.get",
  list: "storage.objects.list",
  metadata: "storage.objects.get",
  media: "storage.objects.get",
  delete: "storage.objects.delete",
  "upload-start": "storage.objects.create",
  "upload-simple": "storage.objects.create",
  compose: "storage.objects.create",
};

export class GcsFaults {
  config: GcsFaultConfig = {};
  private random = seeded(1);
  private queued: { status: number; kinds: readonly GcsRequestKind[] | undefined }[] = [];
  private lost: { status: number; kinds: readonly GcsRequestKind[] | undefined }[] = [];
  private denied = new Map<string, { permissions: Set<string> | undefined; status: number }>();

  /** Merges into the current configuration; a `seed` restarts the RNG. */
  configure(config: GcsFaultConfig): void {
    this.config = { ...this.config, ...config };
    if (config.seed !== undefined) this.random = seeded(config.seed);
  }

  /** The next `count` matching requests fail with `status`. */
  failNext(count: number, status = 503, kinds?: readonly GcsRequestKind[]): void {
    for (let i = 0; i < count; i++) this.queued.push({ status, kinds });
  }

  /**
   * The next `count` matching requests take effect, but their answer is lost on the way back:
   * the client gets `status` instead, as when a connection drops after the server committed.
   * Applies to compose and delete (the requests whose retry meets the changed state).
   */
  loseNext(count: number, status = 503, kinds?: readonly GcsRequestKind[]): void {
    for (let i = 0; i < count; i++) this.lost.push({ status, kinds });
  }

  /** Requests needing `permissions` (all when omitted) on `bucket` get 403 (or 401). */
  deny(bucket: string, permissions?: readonly string[], status: 401 | 403 = 403): void {
    this.denied.set(bucket, { permissions: permissions ? new Set(permissions) : undefined, status });
  }

  allow(bucket: string): void {
    this.denied.delete(bucket);
  }

  reset(): void {
    this.config = {};
    this.random = seeded(1);
    this.queued = [];
    this.lost = [];
    this.denied.clear();
  }

  /** @internal The injected status for this request, if any. */
  pick(kind: GcsRequestKind): number | undefined {
    const i = this.queued.findIndex((q) => !q.kinds || q.kinds.includes(kind));
    if (i >= 0) return this.queued.splice(i, 1)[0]!.status;
    const { failRate = 0, failStatus = 503, failKinds } = this.config;
    if (failRate > 0 && (!failKinds || failKinds.includes(kind)) && this.random() < failRate) return failStatus;
    return undefined;
  }

  /** @internal The status replacing this (already effective) request's answer, if lost. */
  pickLost(kind: GcsRequestKind): number | undefined {
    const i = this.lost.findIndex((q) => !q.kinds || q.kinds.includes(kind));
    return i >= 0 ? this.lost.splice(i, 1)[0]!.status : undefined;
  }

  /** @internal The status to deny `permission` on `bucket` with, if denied. */
  denial(bucket: string, permission: string): number | undefined {
    const d = this.denied.get(bucket);
    return d && (!d.permissions || d.permissions.has(permission)) ? d.status : undefined;
  }

  /** @internal Consumes one unit of a countdown fault. */
  take(which: "corruptUploads" | "corruptDownloads"): boolean {
    const left = this.config[which] ?? 0;
    if (left <= 0) return false;
    this.config[which] = left - 1;
    return true;
  }
}

class HttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

interface Session {
  id: string;
  bucket: string;
  name: string;
  file: string;
  persisted: number;
  declaredSize: number | undefined;
  ifGenerationMatch: string | undefined;
  resource: Record<string, unknown>;
  contentType: string | undefined;
  state: "open" | "final" | "failed";
  result?: StoredObject;
}

interface Finalize {
  bucket: string;
  name: string;
  file: string;
  resource: Record<string, unknown>;
  contentType: string | undefined;
  ifGenerationMatch: string | undefined;
  declaredSize: number | undefined;
  headerHash: string | undefined;
  /** False for writes made through the test API, which model another writer, not the wire. */
  wire: boolean;
}

export async function startGcsStandIn(opts: GcsStandInOptions = {}): Promise<GcsStandIn> {
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? (await mkdtemp(path.join(tmpdir(), "gcs-standin-")));
  await mkdir(path.join(dir, "objects"), { recursive: true });
  await mkdir(path.join(dir, "sessions"), { recursive: true });
  const maxPage = opts.maxListPageSize ?? 1000;
  const buckets = new Map<string, Map<string, StoredObject>>();
  const defaultClasses = new Map<string, string>();
  const sessions = new Map<string, Session>();
  const faults = new GcsFaults();
  if (opts.faults) faults.configure(opts.faults);
  const requests: GcsRequestRecord[] = [];
  let generationClock = Date.now() * 1000;
  let endpoint = "";

  const createBucket = (name: string, bucketOpts: { storageClass?: string } = {}): void => {
    if (!buckets.has(name)) buckets.set(name, new Map());
    if (bucketOpts.storageClass || !defaultClasses.has(name)) defaultClasses.set(name, bucketOpts.storageClass ?? "STANDARD");
  };
  for (const b of opts.buckets ?? []) createBucket(b);

  const objectsOf = (bucket: string): Map<string, StoredObject> => {
    const objects = buckets.get(bucket);
    if (!objects) throw new HttpError(404, "The specified bucket does not exist.");
    return objects;
  };
  const current = (bucket: string, name: string, generation?: string): StoredObject => {
    const obj = objectsOf(bucket).get(name);
    if (!obj || (generation !== undefined && generation !== obj.generation)) throw new HttpError(404, `No such object: ${bucket}/${name}`);
    return obj;
  };
  const checkGeneration = (bucket: string, name: string, ifGenerationMatch: string | undefined): void => {
    if (ifGenerationMatch === undefined) return;
    const existing = objectsOf(bucket).get(name);
    if ((existing?.generation ?? "0") !== ifGenerationMatch) {
      throw new HttpError(
        412,
        `At least one of the pre-conditions you specified did not hold. (ifGenerationMatch=${ifGenerationMatch}, current generation ${existing?.generation ?? "none"})`,
      );
    }
  };
  /** Objects are never patched here, so a live object's metageneration is always 1. */
  const checkMetageneration = (bucket: string, name: string, ifMetagenerationMatch: string | undefined): void => {
    if (ifMetagenerationMatch === undefined) return;
    const existing = objectsOf(bucket).get(name);
    if (!existing || ifMetagenerationMatch !== "1") {
      throw new HttpError(
        412,
        `At least one of the pre-conditions you specified did not hold. (ifMetagenerationMatch=${ifMetagenerationMatch}, current metageneration ${existing ? "1" : "none"})`,
      );
    }
  };
  const resourceOf = (o: StoredObject): Record<string, unknown> => ({
    kind: "storage#object",
    id: `${o.bucket}/${o.name}/${o.generation}`,
    selfLink: `${endpoint}/storage/v1/b/${o.bucket}/o/${encodeURIComponent(o.name)}`,
    mediaLink: `${endpoint}/download/storage/v1/b/${o.bucket}/o/${encodeURIComponent(o.name)}?generation=${o.generation}&alt=media`,
    name: o.name,
    bucket: o.bucket,
    generation: o.generation,
    metageneration: "1",
    contentType: o.contentType,
    storageClass: o.storageClass,
    size: String(o.size),
    ...(o.md5Hash !== undefined ? { md5Hash: o.md5Hash } : {}),
    crc32c: o.crc32c,
    ...(o.componentCount !== undefined ? { componentCount: o.componentCount } : {}),
    etag: Buffer.from(o.generation).toString("base64"),
    timeCreated: o.timeCreated,
    updated: o.timeCreated,
    ...(Object.keys(o.metadata).length ? { metadata: o.metadata } : {}),
  });

  /** The one place an object comes into being: verify, then swap in atomically. */
  const finalize = async (f: Finalize): Promise<StoredObject> => {
    objectsOf(f.bucket);
    if (f.wire && faults.take("corruptUploads")) await flipByte(f.file);
    const sums = await hashFile(f.file);
    if (f.declaredSize !== undefined && f.declaredSize !== sums.size) {
      throw new HttpError(400, `Upload size ${sums.size} does not match the declared X-Upload-Content-Length ${f.declaredSize}.`);
    }
    const declared: [string, string, string | undefined][] = [
      ["CRC32C", sums.crc32c, stringField(f.resource.crc32c)],
      ["MD5", sums.md5Hash, stringField(f.resource.md5Hash)],
      ["CRC32C", sums.crc32c, /crc32c=([^,]+)/.exec(f.headerHash ?? "")?.[1]],
    ];
    for (const [label, calculated, provided] of declared) {
      if (provided !== undefined && provided !== calculated) {
        throw new HttpError(400, `Provided ${label} "${provided}" doesn't match calculated ${label} "${calculated}".`);
      }
    }
    return install(
      f.bucket,
      f.name,
      f.file,
      { ifGenerationMatch: f.ifGenerationMatch },
      {
        size: sums.size,
        crc32c: sums.crc32c,
        md5Hash: sums.md5Hash,
        contentType: f.contentType ?? stringField(f.resource.contentType) ?? "application/octet-stream",
        storageClass: stringField(f.resource.storageClass) ?? defaultClasses.get(f.bucket) ?? "STANDARD",
        metadata: customMetadata(f.resource),
      },
    );
  };

  /**
   * Makes the bytes in `staged` the live object `name` with a new generation, atomically: the
   * preconditions are checked after the last await, so two racing writers cannot both win.
   */
  const install = async (
    bucket: string,
    name: string,
    staged: string,
    preconditions: { ifGenerationMatch?: string | undefined; ifMetagenerationMatch?: string | undefined },
    fields: Omit<StoredObject, "bucket" | "name" | "generation" | "timeCreated" | "file">,
  ): Promise<StoredObject> => {
    const generation = String(++generationClock);
    const file = path.join(dir, "objects", `${randomBytes(8).toString("hex")}-${generation}`);
    await rename(staged, file);
    try {
      checkGeneration(bucket, name, preconditions.ifGenerationMatch);
      checkMetageneration(bucket, name, preconditions.ifMetagenerationMatch);
    } catch (err) {
      await rm(file, { force: true });
      throw err;
    }
    const objects = objectsOf(bucket);
    const previous = objects.get(name);
    const obj: StoredObject = { ...fields, bucket, name, generation, timeCreated: new Date().toISOString(), file };
    objects.set(name, obj);
    if (previous) void rm(previous.file, { force: true });
    return obj;
  };

  const handlers = {
    bucket(bucket: string, res: ServerResponse): void {
      objectsOf(bucket);
      json(res, 200, {
        kind: "storage#bucket",
        id: bucket,
        name: bucket,
        location: "US-CENTRAL1",
        storageClass: defaultClasses.get(bucket) ?? "STANDARD",
        metageneration: "1",
        timeCreated: new Date(0).toISOString(),
      });
    },

    list(bucket: string, q: Record<string, string>, res: ServerResponse): void {
      const prefix = q.prefix ?? "";
      const pageSize = Math.min(maxPage, Number(q.maxResults ?? maxPage) || maxPage);
      const after = q.pageToken ? Buffer.from(q.pageToken, "base64url").toString("utf8") : undefined;
      const names = [...objectsOf(bucket).keys()].filter((n) => n.startsWith(prefix) && (after === undefined || n > after)).sort();
      const page = names.slice(0, pageSize);
      const more = names.length > page.length;
      json(res, 200, {
        kind: "storage#objects",
        ...(more ? { nextPageToken: Buffer.from(page.at(-1)!, "utf8").toString("base64url") } : {}),
        ...(page.length ? { items: page.map((n) => resourceOf(current(bucket, n))) } : {}),
      });
    },

    metadata(bucket: string, name: string, q: Record<string, string>, res: ServerResponse): void {
      const obj = current(bucket, name, q.generation);
      checkGeneration(bucket, name, q.ifGenerationMatch);
      json(res, 200, resourceOf(obj));
    },

    async media(bucket: string, name: string, q: Record<string, string>, req: IncomingMessage, res: ServerResponse): Promise<void> {
      const obj = current(bucket, name, q.generation);
      checkGeneration(bucket, name, q.ifGenerationMatch);
      let start = 0;
      let end = obj.size - 1;
      const range = req.headers.range;
      const m = range ? /^bytes=(\d*)-(\d*)$/.exec(range) : null;
      if (m && (m[1] || m[2])) {
        if (m[1]) {
          start = Number(m[1]);
          if (m[2]) end = Math.min(Number(m[2]), obj.size - 1);
        } else start = Math.max(0, obj.size - Number(m[2]));
        if (start >= obj.size) throw new HttpError(416, "The requested range cannot be satisfied.");
      }
      const partial = Boolean(m && (m[1] || m[2]));
      res.writeHead(partial ? 206 : 200, {
        "content-type": obj.contentType,
        "content-length": String(Math.max(0, end - start + 1)),
        ...(partial ? { "content-range": `bytes ${start}-${end}/${obj.size}` } : {}),
        "accept-ranges": "bytes",
        "x-goog-hash": obj.md5Hash === undefined ? `crc32c=${obj.crc32c}` : `crc32c=${obj.crc32c},md5=${obj.md5Hash}`,
        "x-goog-generation": obj.generation,
        "x-goog-metageneration": "1",
        "x-goog-stored-content-encoding": "identity",
        "x-goog-stored-content-length": String(obj.size),
      });
      if (end < start) return void res.end();
      let corrupt = faults.take("corruptDownloads");
      const flip = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          if (corrupt && chunk.length > 0) {
            chunk = Buffer.from(chunk);
            chunk[0] = chunk[0]! ^ 0xff;
            corrupt = false;
          }
          cb(null, chunk);
        },
      });
      await pipeline(createReadStream(obj.file, { start, end }), flip, res);
    },

    remove(bucket: string, name: string, q: Record<string, string>): void {
      const obj = current(bucket, name, q.generation);
      checkGeneration(bucket, name, q.ifGenerationMatch);
      objectsOf(bucket).delete(name);
      void rm(obj.file, { force: true });
    },

    /**
     * Objects: compose, with the rules Cloud Storage documents
     * (https://cloud.google.com/storage/docs/json_api/v1/objects/compose,
     * https://cloud.google.com/storage/docs/composite-objects): 1 to 32 sources of the bucket in
     * the path; a source whose `generation` is not live is "not found" (404); a source's
     * `objectPreconditions.ifGenerationMatch` and the destination's `ifGenerationMatch` /
     * `ifMetagenerationMatch` are preconditions (412); every source must have the destination's
     * storage class (the request's `destination.storageClass`, else the bucket's default), else
     * 400. The result is the concatenation, with a CRC32C computed here from its bytes (any
     * checksum in the request is not trusted), no MD5, a componentCount summing the sources'
     * (1 per plain object), a new generation, and the custom metadata and contentType of the
     * request's `destination` resource.
     */
    async compose(bucket: string, name: string, q: Record<string, string>, req: IncomingMessage): Promise<StoredObject> {
      const body = await readBody(req);
      let request: Record<string, unknown>;
      try {
        request = JSON.parse(body.toString("utf8")) as Record<string, unknown>;
      } catch {
        throw new HttpError(400, "Parse Error");
      }
      const sourceObjects = Array.isArray(request.sourceObjects) ? (request.sourceObjects as Record<string, unknown>[]) : [];
      if (sourceObjects.length === 0) throw new HttpError(400, "You must provide at least one source component.");
      if (sourceObjects.length > MAX_COMPOSE_SOURCES) {
        throw new HttpError(400, `The number of source components provided (${sourceObjects.length}) exceeds the maximum (${MAX_COMPOSE_SOURCES})`);
      }
      const destination = request.destination && typeof request.destination === "object" ? (request.destination as Record<string, unknown>) : {};
      checkGeneration(bucket, name, q.ifGenerationMatch);
      checkMetageneration(bucket, name, q.ifMetagenerationMatch);
      const objects = objectsOf(bucket);
      const sources = sourceObjects.map((s) => {
        const sourceName = stringField(s.name);
        if (!sourceName) throw new HttpError(400, "Required.");
        const generation = s.generation === undefined || s.generation === null ? undefined : int64Text(s.generation);
        const obj = objects.get(sourceName);
        if (!obj || (generation !== undefined && generation !== obj.generation)) {
          throw new HttpError(404, `Object ${sourceName} (generation: ${generation ?? 0}) not found.`);
        }
        const pre = (s.objectPreconditions as { ifGenerationMatch?: unknown } | undefined)?.ifGenerationMatch;
        if (pre !== undefined && int64Text(pre) !== obj.generation) {
          throw new HttpError(
            412,
            `At least one of the pre-conditions you specified did not hold. (source ${sourceName}: ifGenerationMatch=${int64Text(pre)}, current generation ${obj.generation})`,
          );
        }
        return obj;
      });
      const storageClass = stringField(destination.storageClass) ?? defaultClasses.get(bucket) ?? "STANDARD";
      const otherClasses = [...new Set(sources.map((o) => o.storageClass).filter((c) => c !== storageClass))];
      if (otherClasses.length > 0) {
        throw new HttpError(
          400,
          `Cannot compose object with destination storage class ${storageClass} from source components that have different storage classes (${otherClasses.join(", ")})`,
        );
      }
      // Opened in this same tick, before any await: a source replaced while the bytes are copied
      // is still read as the generation that was checked (its file is unlinked, not truncated).
      const handles = sources.map((o) => openSync(o.file, "r"));
      const staged = path.join(dir, "sessions", `compose-${randomBytes(12).toString("hex")}`);
      try {
        const out = await open(staged, "w");
        try {
          for (const fd of handles) {
            for await (const chunk of createReadStream("", { fd, autoClose: false, start: 0 })) await out.write(chunk as Buffer);
          }
        } finally {
          await out.close();
        }
      } catch (err) {
        await rm(staged, { force: true });
        throw err;
      } finally {
        for (const fd of handles) closeSync(fd);
      }
      const sums = await hashFile(staged);
      const components = sources.reduce((n, o) => n + (o.componentCount ?? 1), 0);
      try {
        return await install(
          bucket,
          name,
          staged,
          { ifGenerationMatch: q.ifGenerationMatch, ifMetagenerationMatch: q.ifMetagenerationMatch },
          {
            size: sums.size,
            crc32c: sums.crc32c,
            contentType: stringField(destination.contentType) ?? "application/octet-stream",
            storageClass,
            componentCount: Math.min(components, MAX_COMPONENT_COUNT),
            metadata: customMetadata(destination),
          },
        );
      } finally {
        await rm(staged, { force: true });
      }
    },

    async startResumable(bucket: string, q: Record<string, string>, req: IncomingMessage, res: ServerResponse): Promise<void> {
      const body = await readBody(req);
      const resource = body.length ? (JSON.parse(body.toString("utf8")) as Record<string, unknown>) : {};
      const name = q.name ?? stringField(resource.name);
      if (!name) throw new HttpError(400, "Required parameter: name");
      objectsOf(bucket);
      checkGeneration(bucket, name, q.ifGenerationMatch);
      const id = randomBytes(12).toString("hex");
      const file = path.join(dir, "sessions", id);
      await writeFile(file, "");
      const size = header(req, "x-upload-content-length");
      sessions.set(id, {
        id,
        bucket,
        name,
        file,
        persisted: 0,
        resource,
        state: "open",
        declaredSize: size === undefined ? undefined : Number(size),
        ifGenerationMatch: q.ifGenerationMatch,
        contentType: header(req, "x-upload-content-type"),
      });
      const location = `${endpoint}/upload/storage/v1/b/${bucket}/o?uploadType=resumable&name=${encodeURIComponent(name)}&upload_id=${id}`;
      res.writeHead(200, { location, "content-length": "0" }).end();
    },

    async sessionPut(session: Session, kind: GcsRequestKind, injected: number | undefined, req: IncomingMessage, res: ServerResponse): Promise<void> {
      if (session.state === "failed") {
        await readBody(req);
        throw new HttpError(410, "The upload session has failed and cannot be resumed; start a new one.");
      }
      if (session.state === "final") {
        await readBody(req);
        return json(res, 200, resourceOf(session.result!));
      }
      const cr = header(req, "content-range") ?? "";
      const status = /^bytes \*\/(\*|\d+)$/.exec(cr);
      const data = /^bytes (\d+)-(-?\d+|\*)\/(\*|\d+)$/.exec(cr);
      if (!status && !data) throw new HttpError(400, `Failed to parse Content-Range header: ${JSON.stringify(cr)}`);
      const total = (status?.[1] ?? data![3]) === "*" ? undefined : Number(status?.[1] ?? data![3]);
      let reachedEnd: boolean;
      if (data) {
        const start = Number(data[1]);
        if (start > session.persisted) {
          await readBody(req);
          throw new HttpError(400, `Invalid request: the chunk starts at byte ${start} but only ${session.persisted} bytes are persisted.`);
        }
        const received = await receiveAt(req, session.file, start);
        const end = start + received;
        if (total !== undefined && end > total) throw new HttpError(400, `Received ${end} bytes, more than the declared total ${total}.`);
        // A request whose range ends in `*` streams the rest of the object: its end is the object's end.
        reachedEnd = (total !== undefined && end === total) || (total === undefined && data[2] === "*");
        let persisted = reachedEnd && injected === undefined ? end : Math.floor(end / RESUMABLE_BLOCK_BYTES) * RESUMABLE_BLOCK_BYTES;
        // An injected fault still keeps part of the chunk, as a dropped connection would, so the
        // client has to ask where to resume instead of assuming all or nothing.
        if (injected !== undefined) persisted = Math.floor((session.persisted + (end - session.persisted) / 2) / RESUMABLE_BLOCK_BYTES) * RESUMABLE_BLOCK_BYTES;
        session.persisted = Math.max(session.persisted, persisted);
        await truncate(session.file, session.persisted);
        if (injected !== undefined) throw new HttpError(injected, faultMessage(injected));
      } else {
        await readBody(req);
        if (injected !== undefined) throw new HttpError(injected, faultMessage(injected));
        reachedEnd = total !== undefined && total === session.persisted;
      }
      if (!reachedEnd) {
        const rangeHeader = session.persisted > 0 ? { range: `bytes=0-${session.persisted - 1}` } : {};
        res.writeHead(308, { ...rangeHeader, "content-length": "0" }).end();
        return;
      }
      try {
        session.result = await finalize({
          bucket: session.bucket,
          name: session.name,
          file: session.file,
          resource: session.resource,
          contentType: session.contentType,
          ifGenerationMatch: session.ifGenerationMatch,
          declaredSize: session.declaredSize,
          headerHash: header(req, "x-goog-hash"),
          wire: true,
        });
        session.state = "final";
      } catch (err) {
        session.state = "failed";
        await rm(session.file, { force: true });
        throw err;
      }
      json(res, 200, resourceOf(session.result));
    },

    async simpleUpload(bucket: string, q: Record<string, string>, req: IncomingMessage, res: ServerResponse): Promise<void> {
      const body = await readBody(req);
      let resource: Record<string, unknown> = {};
      let data = body;
      let contentType = header(req, "content-type");
      if (q.uploadType === "multipart") {
        const parts = parseMultipart(body, contentType ?? "");
        resource = JSON.parse(parts[0]!.body.toString("utf8")) as Record<string, unknown>;
        data = parts[1]!.body;
        contentType = parts[1]!.contentType;
      }
      const name = q.name ?? stringField(resource.name);
      if (!name) throw new HttpError(400, "Required parameter: name");
      checkGeneration(bucket, name, q.ifGenerationMatch);
      const file = path.join(dir, "sessions", randomBytes(12).toString("hex"));
      await writeFile(file, data);
      try {
        const obj = await finalize({
          bucket,
          name,
          file,
          resource,
          contentType,
          ifGenerationMatch: q.ifGenerationMatch,
          declaredSize: undefined,
          headerHash: header(req, "x-goog-hash"),
          wire: true,
        });
        json(res, 200, resourceOf(obj));
      } finally {
        await rm(file, { force: true });
      }
    },
  };

  const route = (
    method: string,
    segments: string[],
    q: Record<string, string>,
    req: IncomingMessage,
  ): { kind: GcsRequestKind; bucket?: string; name?: string; session?: Session } => {
    const root = segments[0] === "upload" || segments[0] === "download" ? segments[0] : "";
    const api = root ? segments.slice(1) : segments;
    if (api[0] !== "storage" || api[1] !== "v1" || api[2] !== "b" || !api[3]) return { kind: "other" };
    const bucket = api[3];
    const o = api[4];
    const name = api.length > 5 ? api.slice(5).join("/") : undefined;
    if (root === "upload") {
      if (o !== "o" || name) return { kind: "other", bucket };
      if (method === "POST") return { kind: q.uploadType === "resumable" ? "upload-start" : "upload-simple", bucket };
      const session = q.upload_id ? sessions.get(q.upload_id) : undefined;
      if (method === "PUT" && session) {
        const statusQuery = /^bytes \*\//.test(header(req, "content-range") ?? "");
        return { kind: statusQuery ? "upload-status" : "upload-chunk", bucket, session };
      }
      return { kind: "other", bucket };
    }
    if (o === undefined && method === "GET" && !root) return { kind: "bucket", bucket };
    if (o === "o" && !name && method === "GET" && !root) return { kind: "list", bucket };
    if (o === "o" && name && method === "GET") return { kind: q.alt === "media" || root === "download" ? "media" : "metadata", bucket, name };
    if (o === "o" && name && method === "DELETE" && !root) return { kind: "delete", bucket, name };
    if (o === "o" && method === "POST" && !root && api.length > 6 && api.at(-1) === "compose")
      return { kind: "compose", bucket, name: api.slice(5, -1).join("/") };
    return { kind: "other", bucket };
  };

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://standin");
    const query = Object.fromEntries(url.searchParams);
    const segments = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
    const method = req.method ?? "GET";
    const { kind, bucket, name, session } = route(method, segments, query, req);
    const authorization = header(req, "authorization");
    const auth = authorization === undefined ? "none" : authorization === `Bearer ${STANDIN_ACCESS_TOKEN}` ? "standin-token" : "other";
    const record: GcsRequestRecord = { method, path: `/${segments.join("/")}`, query, kind, status: 0, injected: false, auth };
    const range = header(req, kind === "media" ? "range" : "content-range");
    if (range) record.range = range;
    res.on("finish", () => {
      record.status = res.statusCode;
      requests.push(record);
    });
    void (async () => {
      try {
        if (faults.config.latencyMs && (!faults.config.latencyKinds || faults.config.latencyKinds.includes(kind))) await sleep(faults.config.latencyMs);
        const injected = faults.pick(kind);
        if (injected !== undefined) record.injected = true;
        if (injected !== undefined && kind !== "upload-chunk" && kind !== "upload-status") {
          await readBody(req);
          throw new HttpError(injected, faultMessage(injected));
        }
        if (bucket && buckets.has(bucket)) {
          const permission = PERMISSION[kind];
          const target = kind === "compose" ? name : kind === "upload-start" || kind === "upload-simple" ? query.name : undefined;
          const overwriting = target !== undefined && buckets.get(bucket)!.has(target);
          // Compose also reads its sources (storage.objects.get), per its reference page.
          for (const p of [permission, overwriting ? "storage.objects.delete" : undefined, kind === "compose" ? "storage.objects.get" : undefined]) {
            const denied = p ? faults.denial(bucket, p) : undefined;
            if (p && denied) {
              await readBody(req);
              throw new HttpError(
                denied,
                denied === 401
                  ? "Invalid Credentials"
                  : `${PRINCIPAL} does not have ${p} access to the Google Cloud Storage ${kind === "bucket" ? "bucket" : "object"}. Permission '${p}' denied on resource (or it may not exist).`,
              );
            }
          }
        }
        if (kind === "bucket") handlers.bucket(bucket!, res);
        else if (kind === "list") handlers.list(bucket!, query, res);
        else if (kind === "metadata") handlers.metadata(bucket!, name!, query, res);
        else if (kind === "media") await handlers.media(bucket!, name!, query, req, res);
        else if (kind === "delete") {
          handlers.remove(bucket!, name!, query);
          const lost = faults.pickLost(kind);
          if (lost !== undefined) {
            record.injected = true;
            throw new HttpError(lost, faultMessage(lost));
          }
          res.writeHead(204).end();
        } else if (kind === "compose") {
          const obj = await handlers.compose(bucket!, name!, query, req);
          const lost = faults.pickLost(kind);
          if (lost !== undefined) {
            record.injected = true;
            throw new HttpError(lost, faultMessage(lost));
          }
          json(res, 200, resourceOf(obj));
        } else if (kind === "upload-start") await handlers.startResumable(bucket!, query, req, res);
        else if (kind === "upload-simple") await handlers.simpleUpload(bucket!, query, req, res);
        else if (session) await handlers.sessionPut(session, kind, injected, req, res);
        else {
          await readBody(req);
          throw new HttpError(404, `Not Found: ${method} ${url.pathname}`);
        }
      } catch (err) {
        if (res.headersSent) return void res.destroy();
        if (err instanceof HttpError) return sendError(res, err.status, err.message);
        sendError(res, 500, `stand-in failure: ${(err as Error).message}`);
      }
    })();
  });

  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, opts.host ?? "127.0.0.1", resolve));
  const addr = server.address() as AddressInfo;
  endpoint = `http://${addr.family === "IPv6" ? `[${addr.address}]` : addr.address}:${addr.port}`;

  return {
    endpoint,
    createBucket,
    async putObject(bucket, name, data, metadata = {}, objectOpts = {}) {
      const file = path.join(dir, "sessions", randomBytes(12).toString("hex"));
      await writeFile(file, data);
      const resource = { metadata, ...(objectOpts.storageClass ? { storageClass: objectOpts.storageClass } : {}) };
      return finalize({
        bucket,
        name,
        file,
        resource,
        contentType: undefined,
        ifGenerationMatch: undefined,
        declaredSize: undefined,
        headerHash: undefined,
        wire: false,
      });
    },
    getObject: (bucket, name) => buckets.get(bucket)?.get(name),
    listObjects: (bucket, prefix = "") => [...(buckets.get(bucket)?.keys() ?? [])].filter((n) => n.startsWith(prefix)).sort(),
    async readObject(bucket, name) {
      const obj = buckets.get(bucket)?.get(name);
      if (!obj) throw new Error(`no object ${bucket}/${name}`);
      const chunks: Buffer[] = [];
      for await (const c of createReadStream(obj.file)) chunks.push(c as Buffer);
      return Buffer.concat(chunks);
    },
    faults,
    requests,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if (ownDir) await rm(dir, { recursive: true, force: true });
    },
  };
}

function faultMessage(status: number): string {
  return status === 429
    ? "The rate of requests exceeds the rate limit. Please reduce the rate of requests."
    : status >= 500
      ? "Backend Error"
      : `injected ${status}`;
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function stringField(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

/** An int64 of a JSON request (a generation), which JSON carries as a string or a number, as text; anything else as its JSON. */
function int64Text(v: unknown): string {
  return typeof v === "string" ? v : JSON.stringify(v);
}

/** The custom `metadata` of an object resource, every value a string as Cloud Storage stores it. */
function customMetadata(resource: Record<string, unknown>): Record<string, string> {
  const custom = resource.metadata && typeof resource.metadata === "object" ? (resource.metadata as Record<string, unknown>) : {};
  return Object.fromEntries(
    Object.entries(custom)
      .filter(([, v]) => v !== null && v !== undefined)
      .map(([k, v]) => [k, String(v)]),
  );
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json; charset=UTF-8", "content-length": String(Buffer.byteLength(text)) }).end(text);
}

/** Cloud Storage's error envelope, which the client library turns into ApiError. */
function sendError(res: ServerResponse, status: number, message: string): void {
  const reason = REASONS[status] ?? "unknown";
  json(res, status, { error: { code: status, message, errors: [{ message, domain: "global", reason }] } });
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Writes the request body into `file` at `position`; returns how many bytes landed. */
async function receiveAt(req: IncomingMessage, file: string, position: number): Promise<number> {
  const out = createWriteStream(file, { flags: "r+", start: position });
  try {
    await pipeline(req, out);
  } catch {
    // A client that hangs up mid-chunk: keep what was written, as Cloud Storage does.
  }
  return out.bytesWritten;
}

async function hashFile(file: string): Promise<{ size: number; crc32c: string; md5Hash: string }> {
  const md5 = createHash("md5");
  let crc = 0;
  let size = 0;
  for await (const c of createReadStream(file, { highWaterMark: 4 * 1024 * 1024 })) {
    const buf = c as Buffer;
    crc = crc32c(buf, crc);
    md5.update(buf);
    size += buf.length;
  }
  const be = Buffer.alloc(4);
  be.writeUInt32BE(crc >>> 0);
  return { size, crc32c: be.toString("base64"), md5Hash: md5.digest("base64") };
}

async function flipByte(file: string): Promise<void> {
  const { size } = await stat(file);
  if (size === 0) return;
  const handle = await open(file, "r+");
  try {
    const at = Math.floor(size / 2);
    const one = Buffer.alloc(1);
    await handle.read(one, 0, 1, at);
    one[0] = one[0]! ^ 0xff;
    await handle.write(one, 0, 1, at);
  } finally {
    await handle.close();
  }
}

/** multipart/related as the client sends it: a JSON part, then the media part. */
function parseMultipart(body: Buffer, contentType: string): { contentType: string; body: Buffer }[] {
  const boundary = /boundary=("?)([^";]+)\1/.exec(contentType)?.[2];
  if (!boundary) throw new HttpError(400, "multipart upload without a boundary");
  const delimiter = Buffer.from(`--${boundary}`);
  const parts: { contentType: string; body: Buffer }[] = [];
  let at = body.indexOf(delimiter);
  while (at >= 0) {
    const start = at + delimiter.length;
    if (body.subarray(start, start + 2).toString() === "--") break;
    const next = body.indexOf(delimiter, start);
    if (next < 0) break;
    const part = body.subarray(start + 2, next - 2); // skip the CRLF after the delimiter and before the next
    const split = part.indexOf("\r\n\r\n");
    const headers = part.subarray(0, split).toString("utf8");
    parts.push({ contentType: /content-type:\s*([^\r\n]+)/i.exec(headers)?.[1] ?? "application/octet-stream", body: part.subarray(split + 4) });
    at = next;
  }
  if (parts.length !== 2) throw new HttpError(400, `multipart upload with ${parts.length} parts (expected metadata and media)`);
  return parts;
}
