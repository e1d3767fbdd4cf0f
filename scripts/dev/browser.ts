// Headless Chromium (Debian's package, or CHROMIUM_PATH) through puppeteer-core, for the tests and
// scripts that open the run report: no browser is downloaded, the system's is driven.
import { pathToFileURL } from "node:url";
import puppeteer, { type Browser, type Page } from "puppeteer-core";

export const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";

export function launchChromium(): Promise<Browser> {
  return puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--headless=new"] });
}

export interface OpenedPage {
  page: Page;
  /** Every request other than the page's own file (each was aborted). */
  foreign: string[];
  /** Console messages, page errors and failed loads of the page itself, of any kind. */
  messages: string[];
  /** Whether the page's own file loaded. */
  ok: boolean;
}

/** Opens a local file with every other request intercepted and refused, console and errors recorded. */
export async function openIsolated(browser: Browser, file: string): Promise<OpenedPage> {
  const url = pathToFileURL(file).href;
  const page = await browser.newPage();
  const foreign: string[] = [];
  const messages: string[] = [];
  await page.setRequestInterception(true);
  page.on("request", (request) => {
    if (request.url() === url) void request.continue();
    else {
      foreign.push(request.url());
      void request.abort();
    }
  });
  page.on("console", (m) => messages.push(`console ${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => messages.push(`page error: ${String(e)}`));
  page.on("requestfailed", (r) => r.url() !== url || messages.push(`request failed: ${r.url()}`));
  await page.setViewport({ width: 1280, height: 900 });
  const response = await page.goto(url, { waitUntil: "load" });
  // Anything late (a lazy image, a deferred fetch) would show up in the listeners meanwhile.
  await new Promise((resolve) => setTimeout(resolve, 300));
  return { page, foreign, messages, ok: response?.ok() ?? true };
}
