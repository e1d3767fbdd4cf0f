// Maintainer tool: run after changing dependencies (`npm install && node scripts/dev/complete-lockfile.mjs`).
// The registry mirror available to this project's build machines lacks some platform binaries
// (for example nodejs-polars-darwin-arm64). npm then leaves those optional packages out of
// package-lock.json, and `npm ci` refuses the lock as "out of sync". This adds the missing
// platform entries (version, os, cpu, libc read from the package names) so the lock is what a
// full registry would have produced; npm skips them on other platforms without fetching.
import { readFileSync, writeFileSync } from "node:fs";

const LOCK = "package-lock.json";
const lock = JSON.parse(readFileSync(LOCK, "utf8"));
const packages = lock.packages;

function platformOf(name) {
  const os = ["darwin", "linux", "win32", "android", "freebsd", "openharmony"].find((o) => name.includes(`-${o}-`) || name.endsWith(`-${o}`));
  const cpu = ["arm64", "x64", "ia32", "arm"].find((c) => new RegExp(`-${c}(-|$)`).test(name));
  if (!os || !cpu) return undefined;
  const entry = { os: [os], cpu: [cpu] };
  if (os === "linux") entry.libc = [name.includes("musl") ? "musl" : "glibc"];
  return entry;
}

let added = 0;
for (const [path, meta] of Object.entries(packages)) {
  for (const [dep, range] of Object.entries(meta.optionalDependencies ?? {})) {
    const base = path === "" ? "node_modules" : `${path}/node_modules`;
    if (packages[`${base}/${dep}`] || packages[`node_modules/${dep}`]) continue;
    const platform = platformOf(dep);
    if (!platform || !/^\d[\w.+-]*$/.test(range)) continue;
    packages[`node_modules/${dep}`] = { version: range, ...platform, optional: true };
    added += 1;
    console.log(`added ${dep}@${range} (${platform.os[0]}/${platform.cpu[0]})`);
  }
}
const sorted = Object.fromEntries(Object.entries(packages).sort(([a], [b]) => (a === "" ? -1 : b === "" ? 1 : a.localeCompare(b))));
lock.packages = sorted;
writeFileSync(LOCK, `${JSON.stringify(lock, null, 2)}\n`);
console.log(`${added} platform entries added to ${LOCK}`);
