// Loads the page in headless Chromium and prints what each section shows,
// as JSON. Usage: node test.mjs PAGE_URL
import { chromium } from "playwright-core";

const url = process.argv[2];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  const console_ = [];
  page.on("console", (message) => console_.push(message.text()));
  await page.goto(url);
  await page.waitForSelector("body[data-done='1']", { timeout: 30000 });
  const sections = {};
  for (const id of ["rest", "sse", "websocket", "grpcweb"]) {
    sections[id] = await page.$$eval(`#${id} li`, (items) => items.map((item) => item.textContent));
  }
  const results = JSON.parse(await page.getAttribute("body", "data-results"));
  console.log(JSON.stringify({ results, sections, console: console_ }));
} finally {
  await browser.close();
}
