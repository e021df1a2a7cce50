// connect-node with gzip on both ways (sendCompression, acceptCompression)
// against the gateway: a unary call and a server stream over HTTP/1.1 and
// HTTP/2. Prints, as JSON, what each call got back.
// Usage: node connect_gzip.mjs BASE_URL ECHO_SET
import { readFileSync } from "node:fs";
import { createClient, ConnectError, Code } from "@connectrpc/connect";
import { createConnectTransport, compressionGzip } from "@connectrpc/connect-node";
import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";

const [base, echoSet] = process.argv.slice(2);
const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(echoSet)));
const echo = registry.getService("protogate.test.v1.EchoService");

async function outcome(call) {
  try {
    return await call();
  } catch (e) {
    const error = ConnectError.from(e);
    return `${Code[error.code]}: ${error.rawMessage}`;
  }
}

const text = "gzip me ".repeat(1000);
const results = {};
for (const httpVersion of ["1.1", "2"]) {
  for (const useBinaryFormat of [false, true]) {
    const transport = createConnectTransport({
      baseUrl: base,
      httpVersion,
      useBinaryFormat,
      sendCompression: compressionGzip,
      acceptCompression: [compressionGzip],
      compressMinBytes: 0,
    });
    const client = createClient(echo, transport);
    const key = `${httpVersion} ${useBinaryFormat ? "proto" : "json"}`;
    results[`${key} unary`] = await outcome(async () => (await client.echo({ fString: text })).fString.length);
    results[`${key} stream`] = await outcome(async () => {
      let total = 0;
      for await (const message of client.echoStream({ message: { fString: text }, count: 3 })) {
        total += message.fString.length;
      }
      return total;
    });
  }
}
console.log(JSON.stringify(results));
