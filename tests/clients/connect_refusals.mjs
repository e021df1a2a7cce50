// connect-node against a gateway that refuses every call (auth required,
// no credentials): prints, as JSON, the code each call ended with, over
// HTTP/1.1 and HTTP/2. Messages are built at run time from a descriptor set.
// Usage: node connect_refusals.mjs BASE_URL ECHO_SET LIBRARY_SET
import { readFileSync } from "node:fs";
import { createClient, ConnectError, Code } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";

const [base, echoSet, librarySet] = process.argv.slice(2);
const service = (path, name) =>
  createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(path))).getService(name);
const echo = service(echoSet, "protogate.test.v1.EchoService");
const library = service(librarySet, "library.v1.LibraryService");

async function outcome(call) {
  try {
    await call();
    return "ok";
  } catch (e) {
    const error = ConnectError.from(e);
    return `${Code[error.code]}: ${error.rawMessage}`;
  }
}

const results = {};
for (const httpVersion of ["1.1", "2"]) {
  const transport = createConnectTransport({ baseUrl: base, httpVersion });
  const client = createClient(echo, transport);
  results[`${httpVersion} server stream`] = await outcome(async () => {
    for await (const _ of client.echoStream({ count: 1 })) { /* none expected */ }
  });
  // A 3 MiB body: still being written when the gateway refuses it.
  results[`${httpVersion} large unary`] = await outcome(() => client.echo({ fString: "x".repeat(3 << 20) }));
  const unknown = createClient(library, transport);
  results[`${httpVersion} unknown stream`] = await outcome(async () => {
    for await (const _ of unknown.streamBooks({ parent: "shelves/1" })) { /* none expected */ }
  });
}
console.log(JSON.stringify(results));
