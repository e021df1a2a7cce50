// A client generated the way a user would: `openapi-typescript` turns the
// gateway's /openapi.json into `library.d.ts`, and openapi-fetch calls the
// gateway with those types. tests/openapi.rs type-checks this file with
// `tsc --strict` against the generated types, then runs it against a live
// gateway: node openapi_client.js <base-url> <api-key>.
import createClient from "openapi-fetch";
import type { paths } from "./library.js";

const [base, apiKey] = process.argv.slice(2);
const client = createClient<paths>({ baseUrl: base });

function check(condition: boolean, message: string): void {
  if (!condition) {
    console.error(message);
    process.exit(1);
  }
}

// The path variable is typed, and so is the answer.
const shelf = await client.GET("/v1/shelves/{shelves}", { params: { path: { shelves: "1" } } });
check(shelf.response.status === 200, `GetShelf: ${shelf.response.status}`);
const name: string | undefined = shelf.data?.name;
check(name === "shelves/1", `GetShelf name: ${name}`);

// A typo in a field name or a path variable must not compile: if the
// generated types were `any`, these directives would be unused and tsc
// would fail.
// @ts-expect-error `shelf` is not a path variable of this route.
void client.GET("/v1/shelves/{shelves}", { params: { path: { shelf: "1" } } });
// @ts-expect-error `titel` is not a field of Shelf.
const typo: string | undefined = shelf.data?.titel;
void typo;

// The request body follows the Book schema; the documented 401 comes back
// without the API key the security requirement names.
const book = { title: "Dune", author: "Frank Herbert", pageCount: 412 };
const anonymous = await client.POST("/v1/shelves/{shelves}/books", {
  params: { path: { shelves: "1" } },
  body: book,
});
check(anonymous.response.status === 401, `CreateBook without a key: ${anonymous.response.status}`);
const created = await client.POST("/v1/shelves/{shelves}/books", {
  params: { path: { shelves: "1" } },
  body: book,
  headers: { "x-api-key": apiKey },
});
check(created.response.status === 200, `CreateBook: ${created.response.status}`);
const pages: number | undefined = created.data?.pageCount;
check(pages === 412 && created.data?.title === "Dune", `CreateBook answer: ${JSON.stringify(created.data)}`);

// Query parameters are typed too.
const listed = await client.GET("/v1/shelves/{shelves}/books", {
  params: { path: { shelves: "1" }, query: { pageSize: 50 } },
});
check(listed.response.status === 200, `ListBooks: ${listed.response.status}`);
const titles = (listed.data?.books ?? []).map((b) => b.title);
check(titles.includes("Dune"), `ListBooks titles: ${titles}`);
console.log(JSON.stringify({ shelf: name, created: created.data?.name, books: titles.length }));
