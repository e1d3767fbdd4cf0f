// `npm run report:screenshot -- <report.html> <out.png>`: a full-page screenshot of a run report
// (or the index) at 1280 px wide, in headless Chromium (CHROMIUM_PATH, else /usr/bin/chromium).
// Made for the README's docs/report-sample.png from the sample's report (`npm start`).
import path from "node:path";
import { pathToFileURL } from "node:url";
import { launchChromium } from "./browser.ts";

const [html, png] = process.argv.slice(2);
if (!html || !png || !png.endsWith(".png")) {
  process.stderr.write("usage: npm run report:screenshot -- <report.html> <out.png>\n");
  process.exit(2);
}
const browser = await launchChromium();
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 800 });
  await page.goto(pathToFileURL(path.resolve(html)).href, { waitUntil: "load" });
  await page.screenshot({ path: png, fullPage: true });
  process.stderr.write(`wrote ${png}\n`);
} finally {
  await browser.close();
}
