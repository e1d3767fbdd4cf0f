// Headless Chromium (Debian's package, or CHROMIUM_PATH) through puppeteer-core, for the tests and
// scripts that open the run report: no browser is downloaded, the system's is driven.
import puppeteer, { type Browser } from "puppeteer-core";

export const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";

export function launchChromium(): Promise<Browser> {
  return puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--headless=new"] });
}
