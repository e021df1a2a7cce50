// Loads the page in headless Chromium and prints what each section shows,
// and the HTTP version of each of its requests to the gateway, as JSON.
// Usage: node test.mjs PAGE_URL [CHROMIUM_ARG...] (e.g. a certificate to
// trust: --ignore-certificate-errors-spki-list=HASH)
import { chromium } from "playwright-core";

const url = process.argv[2];
const extra = process.argv.slice(3);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", ...extra],
});
try {
  const page = await browser.newPage();
  // The protocol of every response, as DevTools shows it (resource timing
  // hides it for cross-origin requests).
  const gateway = new URL(url).searchParams.get("gateway");
  const seen = [];
  const devtools = await page.context().newCDPSession(page);
  await devtools.send("Network.enable");
  devtools.on("Network.responseReceived", (event) => seen.push([event.response.url, event.response.protocol]));
  const console_ = [];
  page.on("console", (message) => console_.push(message.text()));
  await page.goto(url);
  await page.waitForSelector("body[data-done='1']", { timeout: 30000 });
  const sections = {};
  for (const id of ["rest", "sse", "websocket", "grpcweb"]) {
    sections[id] = await page.$$eval(`#${id} li`, (items) => items.map((item) => item.textContent));
  }
  const results = JSON.parse(await page.getAttribute("body", "data-results"));
  const protocols = seen.filter(([address]) => address.startsWith(gateway)).map(([, protocol]) => protocol);
  console.log(JSON.stringify({ results, sections, protocols, console: console_ }));
} finally {
  await browser.close();
}
