// `gsutil stat` and `gsutil -q stat`, answering from the Cloud Storage stand-in at
// $FAKE_CLOUD_GCS_ENDPOINT and printing what gsutil 5.37 prints (recorded/gsutil-stat.json):
// the object's fields in gsutil's aligned layout (gslib/utils/ls_helper.py), custom metadata in
// an indented block under "Metadata:", "No URLs matched" for a missing object, and for an
// object the caller may not read, gsutil's own two lines (403) or its ServiceException (401).
// FAKE_CLOUD_GSUTIL_ACCESS=denied (403) or =anonymous (401) makes every object unreadable.

/** One of gsutil's "Label:      value" lines: (4 * indent spaces + label + ":") padded to 28. */
const line = (label: string, value: unknown, indent = 1) => `${`${" ".repeat(indent * 4)}${label}:`.padEnd(28)}${String(value)}`;
const httpDate = (iso: string) => new Date(iso).toUTCString();

interface StoredObject {
  size: string;
  contentType?: string;
  storageClass?: string;
  crc32c?: string;
  md5Hash?: string;
  etag: string;
  generation?: string;
  metageneration?: string;
  timeCreated?: string;
  updated?: string;
  timeStorageClassUpdated?: string;
  metadata?: Record<string, string>;
}

/** What `gsutil stat URL` prints for an object resource of the JSON API. */
export function formatStat(url: string, o: StoredObject): string {
  const lines = [`${url}:`];
  if (o.timeCreated) lines.push(line("Creation time", httpDate(o.timeCreated)));
  if (o.updated) lines.push(line("Update time", httpDate(o.updated)));
  if (o.timeStorageClassUpdated && o.timeStorageClassUpdated !== o.timeCreated)
    lines.push(line("Storage class update time", httpDate(o.timeStorageClassUpdated)));
  if (o.storageClass) lines.push(line("Storage class", o.storageClass));
  lines.push(line("Content-Length", o.size), line("Content-Type", o.contentType ?? "None"));
  const metadata = Object.entries(o.metadata ?? {});
  if (metadata.length > 0) lines.push(line("Metadata", ""), ...metadata.map(([k, v]) => line(k, v, 2)));
  if (o.crc32c) lines.push(line("Hash (crc32c)", o.crc32c));
  if (o.md5Hash) lines.push(line("Hash (md5)", o.md5Hash));
  lines.push(line("ETag", o.etag.replace(/^["']+|["']+$/g, "")));
  if (o.generation) lines.push(line("Generation", o.generation));
  if (o.metageneration) lines.push(line("Metageneration", o.metageneration));
  return `${lines.join("\n")}\n`;
}

export async function gsutil(argv: string[]): Promise<number> {
  const quiet = argv[0] === "-q";
  const args = quiet ? argv.slice(1) : argv;
  if (args[0] !== "stat" || args.length < 2 || args.slice(1).some((a) => a.startsWith("-"))) {
    process.stderr.write(`fake gsutil: unsupported command: gsutil ${argv.join(" ")}\n`);
    return 98;
  }
  const endpoint = process.env.FAKE_CLOUD_GCS_ENDPOINT;
  if (!endpoint) {
    process.stderr.write("fake gsutil: FAKE_CLOUD_GCS_ENDPOINT is not set (the test must point it at the GCS stand-in)\n");
    return 97;
  }
  const access = process.env.FAKE_CLOUD_GSUTIL_ACCESS;
  let unmatched = false;
  for (const url of args.slice(1)) {
    const m = /^gs:\/\/([^/]+)\/(.+)$/.exec(url);
    if (!m) {
      process.stderr.write("CommandException: The stat command only works with object URLs\n");
      return 1;
    }
    if (access === "anonymous") {
      process.stderr.write(
        "ServiceException: 401 Anonymous caller does not have storage.objects.get access to the Google Cloud Storage object. Permission 'storage.objects.get' denied on resource (or it may not exist).\n",
      );
      return 1;
    }
    if (access === "denied") {
      if (!quiet) process.stderr.write(`You aren't authorized to read ${url} - skipping\nNo URLs matched: ${url}\n`);
      unmatched = true;
      continue;
    }
    const res = await fetch(`${endpoint}/storage/v1/b/${encodeURIComponent(m[1]!)}/o/${encodeURIComponent(m[2]!)}`);
    if (res.status === 404) {
      if (!quiet) process.stderr.write(`No URLs matched: ${url}\n`);
      unmatched = true;
      continue;
    }
    if (!res.ok) {
      process.stderr.write(`fake gsutil: the stand-in answered ${res.status}\n`);
      return 1;
    }
    const o = (await res.json()) as StoredObject;
    if (!quiet) process.stdout.write(formatStat(url, o));
  }
  return unmatched ? 1 : 0;
}
