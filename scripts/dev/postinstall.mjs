// Runs after `npm install` / `npm ci` with node_modules/.bin first on PATH, so `node` here is the
// Node 24 from the `node` devDependency even when npm itself runs on an older system Node.
// npm decides whether to install optional native packages against the Node that runs npm: on an
// older Node it silently skips nodejs-polars' native binary (it declares node >= 22), and the job
// would later fail with "Cannot find module nodejs-polars-linux-x64-gnu". Here we detect that
// and install the binary that matches the Node we actually run on.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

const require = createRequire(import.meta.url);
const major = Number(process.versions.node.split(".")[0]);
if (major < 24) {
  console.error(`postinstall: running on Node ${process.version}; this project needs Node 24 (the "node" devDependency provides it for npm scripts).`);
}

// Checked in a child process: a failed require leaves half-loaded modules cached in this one.
function polarsLoads() {
  try {
    execFileSync(process.execPath, ["-e", 'require("nodejs-polars")'], { stdio: "ignore", cwd: process.cwd() });
    return true;
  } catch {
    return false;
  }
}

if (!polarsLoads()) {
  const version = require("nodejs-polars/package.json").version;
  const libc = process.report?.getReport()?.header?.glibcVersionRuntime ? "gnu" : "musl";
  const name = `nodejs-polars-${process.platform}-${process.arch}${process.platform === "linux" ? `-${libc}` : ""}`;
  console.error(`postinstall: nodejs-polars native binary missing; installing ${name}@${version} for Node ${process.version}`);
  // `npm pack` fetches the exact tarball through npm's own registry settings and cache; unpacking
  // it beside nodejs-polars leaves the rest of the installed tree untouched (a nested
  // `npm install` would prune the Node 24 binary that the "node" package set up).
  const tmp = mkdtempSync(join(tmpdir(), "polars-native-"));
  try {
    const npmCli = process.env.npm_execpath;
    const packArgs = ["pack", "--silent", "--pack-destination", tmp, `${name}@${version}`];
    const out = npmCli ? execFileSync(process.execPath, [npmCli, ...packArgs], { encoding: "utf8" }) : execFileSync("npm", packArgs, { encoding: "utf8" });
    const tarball = join(tmp, out.trim().split("\n").pop());
    const target = join(dirname(require.resolve("nodejs-polars/package.json")), "..", name);
    mkdirSync(target, { recursive: true });
    execFileSync("tar", ["-xzf", tarball, "-C", target, "--strip-components=1"]);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  if (!polarsLoads()) {
    console.error("postinstall: nodejs-polars still does not load; run `npm rebuild` under Node 24");
    process.exit(1);
  }
}
