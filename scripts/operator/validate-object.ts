// Validates a training file where it is stored (Cloud Storage or a local bucket directory)
// without downloading it: the object's size, CRC32C and metadata against its manifest, and the
// project's validation rules (src/validation.ts) on its parquet footer, read with two ranged
// reads (the last 8 bytes, then the footer).
//
//   node scripts/operator/validate-object.ts gs://bqx-ml-output/training_eurusd.parquet [--min-rows N] [--min-columns N] [--execution NAME] [--json]
//   node scripts/operator/validate-object.ts data/bucket/training_eurusd.parquet
//   node scripts/operator/validate-object.ts --check-credentials
//
// --execution NAME also requires the file to have been built by that Cloud Run execution (the
// job records it in the object's metadata and the manifest), so a file left by an earlier run
// does not pass for a new one. --check-credentials only checks that the credentials below are
// usable, as the execute scripts do before starting anything.
//
// Exit 0 when every check passes; 1 when one fails (each failure says what and what to do:
// rebuild the file); 2 for a bad command line; 3 when the file could not be checked because of
// the caller's credentials or access (nothing is known to be wrong with the file).
// GCS_ENDPOINT points the Cloud Storage client at a stand-in, as for the job: a loopback http
// stand-in gets a placeholder token; anything else needs Application Default Credentials.
import { createHash } from "node:crypto";
import path from "node:path";
import { parseArgs } from "node:util";
import type { AuthClient } from "google-auth-library";
import type { Bucket, ObjectInfo } from "../../src/bucket/port.ts";
import { DEFAULTS } from "../../src/config.ts";
import { KEY_COLUMN, PAIRS } from "../../src/constants.ts";
import { describeError, JobError } from "../../src/errors.ts";
import { isLoopbackEndpoint } from "../../src/gcp/auth.ts";
import { manifestObjectName } from "../../src/layout.ts";
import { schemaText, summarizeFooter } from "../../src/parquet/index.ts";
import { formatBytes } from "../../src/units.ts";
import { validateTrainingFile } from "../../src/validation.ts";

const USAGE =
  "usage: node scripts/operator/validate-object.ts <gs://bucket/[prefix/]training_<pair>.parquet | local path> [--min-rows N] [--min-columns N] [--execution NAME] [--json]\n" +
  "       node scripts/operator/validate-object.ts --check-credentials";
const PARQUET_MAGIC = "PAR1";
const READ_ONLY_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only";
/** The file could not be checked: the caller's credentials or access, not the file. */
const EXIT_NOT_CHECKED = 3;

class NotChecked extends Error {}

interface Check {
  check: string;
  ok: boolean;
  detail: string;
}

interface Manifest {
  pair?: string;
  rows?: number;
  columns?: number;
  file?: { bytes?: number; crc32c?: string; generation?: string; schemaSha256?: string };
  run?: { execution?: string };
  tables?: { target?: { rows?: number }; features?: unknown[] };
}

function usage(message: string): never {
  process.stderr.write(`${message}\n${USAGE}\n`);
  process.exit(2);
}

function wholeNumber(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value)) usage(`--${name}: expected a whole number (got ${JSON.stringify(value)})`);
  return Number(value);
}

/** As for the job (src/config.ts): plain http only to this machine, where a stand-in listens. */
const gcsEndpoint = (): string | undefined => {
  const endpoint = process.env.GCS_ENDPOINT?.trim() || undefined;
  if (endpoint && /^http:/i.test(endpoint) && !isLoopbackEndpoint(endpoint)) {
    usage(
      `GCS_ENDPOINT: expected https:// for a remote endpoint, or http:// only on a loopback address (127.0.0.1, ::1, localhost) for a local stand-in; leave unset for Google (got ${JSON.stringify(endpoint)})`,
    );
  }
  return endpoint;
};

/**
 * Application Default Credentials, resolved and used once, so that their absence is reported
 * as such before any read. `gcloud auth login` does not set them, which is what a fresh
 * workstation meets. Undefined for a loopback stand-in (the bucket gives it a placeholder token).
 */
async function credentials(endpoint: string | undefined): Promise<AuthClient | undefined> {
  if (isLoopbackEndpoint(endpoint)) return undefined;
  const { GoogleAuth } = await import("google-auth-library");
  try {
    const client = await new GoogleAuth({ scopes: [READ_ONLY_SCOPE] }).getClient();
    await client.getAccessToken();
    return client;
  } catch (err) {
    throw new NotChecked(
      `no usable Application Default Credentials on this machine (${describeError(err)}). ` +
        "They are what this validation reads Cloud Storage with, and `gcloud auth login` does not set them: " +
        "run `gcloud auth application-default login` (or point GOOGLE_APPLICATION_CREDENTIALS at a service-account key file), then validate again",
    );
  }
}

async function openBucket(uri: string): Promise<{ bucket: Bucket; name: string }> {
  if (uri.startsWith("gs://")) {
    const slash = uri.lastIndexOf("/");
    const { GcsBucket } = await import("../../src/bucket/gcs.ts");
    const endpoint = gcsEndpoint();
    const authClient = await credentials(endpoint);
    const bucket = new GcsBucket(uri.slice(0, slash), {
      ...(endpoint ? { apiEndpoint: endpoint } : {}),
      ...(authClient ? { authClient } : {}),
      retry: { attempts: 3 },
    });
    return { bucket, name: uri.slice(slash + 1) };
  }
  const { LocalDirectoryBucket } = await import("../../src/bucket/local.ts");
  return { bucket: new LocalDirectoryBucket(path.dirname(path.resolve(uri))), name: path.basename(uri) };
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      "min-rows": { type: "string" },
      "min-columns": { type: "string" },
      execution: { type: "string" },
      "check-credentials": { type: "boolean", default: false },
      json: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  gcsEndpoint();
  if (values["check-credentials"]) {
    if (positionals.length !== 0) usage("--check-credentials takes no object");
    await credentials(gcsEndpoint());
    return 0;
  }
  const expectedExecution = values.execution;
  if (expectedExecution !== undefined && !/^[a-z0-9][a-z0-9-]*$/.test(expectedExecution))
    usage(`--execution: expected a Cloud Run execution name (got ${JSON.stringify(expectedExecution)})`);
  if (positionals.length !== 1) usage(`expected one object URI (got ${positionals.length})`);
  const uri = positionals[0]!;
  const minRows = wholeNumber("min-rows", values["min-rows"], DEFAULTS.MIN_ROWS);
  const minColumns = wholeNumber("min-columns", values["min-columns"], DEFAULTS.MIN_COLUMNS);
  const fileName = uri.slice(uri.lastIndexOf("/") + 1);
  const pair = /^training_([a-z]{6})\.parquet$/.exec(fileName)?.[1];
  if (pair === undefined || !PAIRS.includes(pair)) usage(`${uri}: expected an object named training_<pair>.parquet for one of the 28 pairs`);

  const checks: Check[] = [];
  const check = (name: string, ok: boolean, detail: string) => checks.push({ check: name, ok, detail });
  let bytesRead = 0;
  let size = 0;
  const report = (): number => {
    const ok = checks.every((c) => c.ok);
    if (values.json) {
      process.stdout.write(`${JSON.stringify({ uri, pair, ok, bytes: size, bytesRead, checks })}\n`);
    } else {
      for (const c of checks) process.stdout.write(`${c.ok ? "ok  " : "FAIL"}  ${c.check}: ${c.detail}\n`);
      process.stdout.write(`${ok ? "valid" : "NOT VALID"}: ${uri} (read ${formatBytes(bytesRead)} of ${formatBytes(size)}: footer and manifest only)\n`);
    }
    return ok ? 0 : 1;
  };

  const { bucket, name } = await openBucket(uri);
  const read = async (object: string, start: number, end: number) => {
    const buf = await bucket.readRange(object, start, end);
    bytesRead += buf.length;
    return buf;
  };

  const info: ObjectInfo | undefined = await bucket.stat(name);
  if (!info) {
    check(
      "object",
      false,
      `${uri} does not exist: run the job for ${pair} (scripts/operator/execute_production_26pairs.sh --pairs ${pair}), or check OUTPUT_URI`,
    );
    return report();
  }
  size = info.bytes;
  check(
    "object",
    info.bytes >= 12,
    `${formatBytes(info.bytes)} (${info.bytes} bytes), crc32c ${info.crc32c || "none"}${info.generation ? `, generation ${info.generation}` : ""}`,
  );
  if (info.bytes < 12) return report();

  // The manifest is written after the training file has been validated and verified; it is what
  // ties these bytes to that validation.
  const manifestName = manifestObjectName(pair);
  const manifestInfo = await bucket.stat(manifestName);
  let manifest: Manifest | undefined;
  if (!manifestInfo) {
    check("manifest", false, `${manifestName} is missing next to the file: the run that wrote it did not finish its upload; run the job for ${pair} again`);
  } else {
    try {
      manifest = JSON.parse((await read(manifestName, 0, manifestInfo.bytes)).toString("utf8")) as Manifest;
    } catch (err) {
      check("manifest", false, `${manifestName} cannot be read as JSON (${describeError(err)}); run the job for ${pair} again`);
    }
  }
  if (manifest) {
    const problems: string[] = [];
    if (manifest.pair !== pair) problems.push(`pair ${JSON.stringify(manifest.pair)}`);
    if (manifest.file?.bytes !== info.bytes) problems.push(`bytes ${manifest.file?.bytes} (object: ${info.bytes})`);
    if (manifest.file?.crc32c !== info.crc32c) problems.push(`crc32c ${manifest.file?.crc32c} (object: ${info.crc32c})`);
    if (manifest.file?.generation && info.generation && manifest.file.generation !== info.generation) {
      problems.push(`generation ${manifest.file.generation} (object: ${info.generation}): the file was replaced after this manifest was written`);
    }
    check(
      "manifest",
      problems.length === 0,
      problems.length === 0
        ? `${manifestName} describes these bytes (size and CRC32C match), so they are the ones the job validated before upload`
        : `${manifestName} does not describe this object: ${problems.join("; ")}; run the job for ${pair} again`,
    );
  }

  if (expectedExecution !== undefined) {
    const builtBy = info.metadata.execution;
    const manifestSays = manifest ? manifest.run?.execution : builtBy;
    const ok = builtBy === expectedExecution && manifestSays === expectedExecution;
    const who = builtBy ? `execution ${builtBy}` : "an execution that recorded no name";
    check(
      "execution",
      ok,
      ok
        ? `built by execution ${expectedExecution}`
        : `built by ${who}${manifestSays !== builtBy ? ` (its manifest says ${manifestSays ?? "none"})` : ""}, not ${expectedExecution}: a file from an earlier run; ${expectedExecution} did not build ${pair}`,
    );
  }

  const tail = await read(name, info.bytes - 8, info.bytes);
  if (tail.subarray(4).toString("latin1") !== PARQUET_MAGIC) {
    check("footer", false, `not a parquet file (no trailing ${PARQUET_MAGIC}): the object is damaged or not a training file`);
    return report();
  }
  const footerLength = tail.readUInt32LE(0);
  if (footerLength + 12 > info.bytes) {
    check("footer", false, `footer length ${footerLength} exceeds the object's ${info.bytes} bytes: the object is truncated`);
    return report();
  }
  const thrift = new Uint8Array(await read(name, info.bytes - 8 - footerLength, info.bytes - 8));
  const footer = summarizeFooter(thrift, info.bytes);
  const schemaSha256 = createHash("sha256").update(schemaText(thrift)).digest("hex");
  check(
    "footer",
    true,
    `${footer.numRows} rows x ${footer.columnNames.length} columns in ${footer.rowGroups.length} row groups (${formatBytes(footer.footerBytes)} footer)`,
  );

  const md = info.metadata;
  const mdProblems = [
    ...(md.pair !== pair ? [`pair=${JSON.stringify(md.pair)}`] : []),
    ...(md.rows !== String(footer.numRows) ? [`rows=${JSON.stringify(md.rows)} (footer: ${footer.numRows})`] : []),
    ...(md.columns !== String(footer.columnNames.length) ? [`columns=${JSON.stringify(md.columns)} (footer: ${footer.columnNames.length})`] : []),
    ...(md.schema_sha256 !== schemaSha256 ? [`schema_sha256=${JSON.stringify(md.schema_sha256)} (footer: ${schemaSha256})`] : []),
    ...(footer.keyValueMetadata["bqx.pair"] !== pair ? [`footer bqx.pair=${JSON.stringify(footer.keyValueMetadata["bqx.pair"])}`] : []),
  ];
  check(
    "metadata",
    mdProblems.length === 0,
    mdProblems.length === 0
      ? `pair=${pair} rows=${md.rows} columns=${md.columns} schema_sha256=${schemaSha256.slice(0, 12)}...`
      : `${mdProblems.join("; ")}: the object's metadata does not match its content; run the job for ${pair} again`,
  );

  // The footer carries the manifest of the file's content; the manifest object is that plus the
  // run's record and the file's identity. Any difference means one of them was replaced.
  if (manifest) {
    const { run: _run, file: _file, ...content } = manifest as Manifest & Record<string, unknown>;
    const inFooter = footer.keyValueMetadata["bqx.manifest"];
    const same = inFooter !== undefined && JSON.stringify(JSON.parse(inFooter)) === JSON.stringify(content);
    check(
      "footer manifest",
      same,
      same
        ? "the footer's manifest is the manifest object's (pair, rows, tables, validation)"
        : `${inFooter === undefined ? "the footer carries no manifest" : "the footer's manifest differs from the manifest object's"}: they were not written together; run the job for ${pair} again`,
    );
  }

  const tables = 1 + (manifest?.tables?.features?.length ?? 0);
  const result = validateTrainingFile({
    rows: footer.numRows,
    columnNames: footer.columnNames,
    nullCounts: footer.nullCounts,
    // Key order needs the key column's pages, not the footer: the job checked it before upload,
    // and the manifest check above ties these bytes to that check.
    key: { present: footer.columnNames.includes(KEY_COLUMN), strictlyIncreasing: true },
    expectedRows: manifest?.tables?.target?.rows ?? footer.numRows,
    tablesInFile: tables,
    tablesDiscovered: tables,
    familyOf: (column) => column.split("_")[0] ?? column,
    minRows,
    minColumns,
  });
  check(
    "validation",
    result.ok,
    result.ok
      ? `rows >= ${minRows}, columns >= ${minColumns}, ${result.targetsPresent}/49 targets, horizons ${Object.keys(result.horizons).length}/7, ${result.features} features, no duplicate names${result.warnings.length ? `; warnings: ${result.warnings.join("; ")}` : ""}`
      : `${result.errors.join("; ")}`,
  );
  return report();
}

try {
  process.exitCode = await main();
} catch (err) {
  if (err instanceof NotChecked) {
    process.stderr.write(`validate-object: not checked: ${err.message}\n`);
    process.exitCode = EXIT_NOT_CHECKED;
  } else if (err instanceof JobError && (err.reason === "gcs-permission-denied" || err.reason === "gcs-unauthenticated")) {
    // The adapter's fix names the job's service account; here it is the person validating.
    const bucket = /gs:\/\/([^/\s]+)/.exec(err.message)?.[1] ?? "<bucket>";
    process.stderr.write(
      `validate-object: not checked: ${err.message}. Fix: grant roles/storage.objectViewer on gs://${bucket} to the account of your Application Default Credentials ` +
        `(gcloud storage buckets add-iam-policy-binding gs://${bucket} --member=user:<you> --role=roles/storage.objectViewer), or log in as one that has it (gcloud auth application-default login)\n`,
    );
    process.exitCode = EXIT_NOT_CHECKED;
  } else {
    process.stderr.write(`validate-object: ${describeError(err)}\n`);
    process.exitCode = 1;
  }
}
