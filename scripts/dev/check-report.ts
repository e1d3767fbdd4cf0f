// Opens run reports and index pages in headless Chromium the way the tests do, with every request
// but the page's own file refused, and prints one JSON line per page: requests refused, console
// messages and page errors, heat-map cells, size. Exit 1 if any page loaded anything else or
// logged anything.
//   node scripts/dev/check-report.ts <page.html> [<page.html> ...]   (npm run report:check -- ...)
import { stat } from "node:fs/promises";
import { launchChromium, openIsolated } from "./browser.ts";

const files = process.argv.slice(2).filter((a) => a !== "--");
if (files.length === 0) {
  process.stderr.write("usage: node scripts/dev/check-report.ts <page.html> [<page.html> ...]\n");
  process.exit(2);
}
const browser = await launchChromium();
let clean = true;
try {
  for (const file of files) {
    const { page, foreign, messages, ok } = await openIsolated(browser, file);
    const heatCells = await page.$$eval("#null-heat-map rect.cell", (cells) => cells.length);
    const coverageCells = await page.$$eval("#target-coverage rect.cell", (cells) => cells.length);
    const svgs = await page.$$eval("svg", (s) => s.length);
    const title = await page.title();
    await page.close();
    const pageClean = ok && foreign.length === 0 && messages.length === 0;
    clean &&= pageClean;
    process.stdout.write(
      `${JSON.stringify({ file, bytes: (await stat(file)).size, title, loaded: ok, svgs, heatCells, coverageCells, foreignRequests: foreign, messages, clean: pageClean })}\n`,
    );
  }
} finally {
  await browser.close();
}
process.exitCode = clean ? 0 : 1;
