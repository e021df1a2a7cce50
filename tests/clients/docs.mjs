// Drives the gateway's /docs page (Swagger UI) in headless Chromium as a
// newcomer would: open an operation, try it out without credentials, then
// Authorize with an API key and try again. Prints JSON with each status,
// and every URL the page fetched (the page must work offline).
// Usage: node docs.mjs GATEWAY_URL API_KEY
import { chromium } from "playwright-core";

const [base, apiKey] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  const requested = [];
  const errors = [];
  page.on("request", (request) => requested.push(request.url()));
  page.on("pageerror", (error) => errors.push(String(error)));
  await page.goto(`${base}/docs`);
  const operation = page.locator(".opblock", { hasText: "LibraryService_CreateBook" });
  await operation.locator(".opblock-summary").click();
  // The gateway's page opens operations ready to try (tryItOutEnabled).
  await operation.getByRole("button", { name: "Execute" }).waitFor();
  await operation.locator("input[placeholder='shelves']").fill("1");
  await operation.locator("textarea.body-param__text").fill(JSON.stringify({ title: "Dune", pageCount: 412 }));

  const execute = async () => {
    const answered = page.waitForResponse((r) => r.url().endsWith("/v1/shelves/1/books"));
    await operation.getByRole("button", { name: "Execute" }).click();
    const response = await answered;
    // What the page shows, not only what the network carried.
    const shown = operation.locator(".live-responses-table tbody .response-col_status").first();
    await shown.filter({ hasText: String(response.status()) }).waitFor({ timeout: 10000 });
    return { status: response.status(), body: await response.json() };
  };
  const anonymous = await execute();

  await page.locator(".auth-wrapper .authorize").click();
  const dialog = page.locator(".dialog-ux");
  const keySection = dialog.locator(".auth-container", { hasText: "apiKey" });
  await keySection.locator("input").fill(apiKey);
  await keySection.locator("button.authorize").click();
  await dialog.locator("button.btn-done").first().click();
  const authorized = await execute();

  const offsite = requested.filter((url) => !url.startsWith(base) && !url.startsWith("data:"));
  console.log(JSON.stringify({ anonymous, authorized, offsite, errors }));
} finally {
  await browser.close();
}
