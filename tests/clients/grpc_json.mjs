// connect-node's gRPC and gRPC-Web transports with the JSON codec
// (`useBinaryFormat: false` sends application/grpc+json and
// application/grpc-web+json) against a backend that speaks only protobuf.
// Prints, as JSON, what each call got back.
// Usage: node grpc_json.mjs BASE_URL ECHO_SET
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, createGrpcWebTransport, compressionGzip } from "@connectrpc/connect-node";
import { echoService, outcome } from "./connect_common.mjs";

const [base, echoSet] = process.argv.slice(2);
const echo = echoService(echoSet);

async function* messages(texts) {
  for (const fString of texts) {
    yield { fString };
  }
}

const transports = {
  "grpc h2": createGrpcTransport({ baseUrl: base, useBinaryFormat: false }),
  "grpc h2 gzip": createGrpcTransport({
    baseUrl: base,
    useBinaryFormat: false,
    sendCompression: compressionGzip,
    compressMinBytes: 0,
  }),
  "grpc-web h1": createGrpcWebTransport({ baseUrl: base, httpVersion: "1.1", useBinaryFormat: false }),
  "grpc-web h2": createGrpcWebTransport({ baseUrl: base, httpVersion: "2", useBinaryFormat: false }),
};

const results = {};
for (const [name, transport] of Object.entries(transports)) {
  const client = createClient(echo, transport);
  results[`${name} unary`] = await outcome(async () => {
    const reply = await client.echo({ fInt64: 9007199254740993n, fEnum: 2, fBytes: new Uint8Array([0, 255]), rString: ["a", "b"] });
    return [reply.fInt64.toString(), reply.fEnum, Array.from(reply.fBytes), reply.rString];
  });
  results[`${name} server stream`] = await outcome(async () => {
    const texts = [];
    for await (const reply of client.echoStream({ message: { fString: "s" }, count: 3 })) {
      texts.push(reply.fString);
    }
    return texts;
  });
  results[`${name} error`] = await outcome(() => client.fail({ code: 5, message: "no such thing" }));
  results[`${name} stream error`] = await outcome(async () => {
    let seen = 0;
    for await (const _ of client.echoStream({ message: { fString: "s" }, count: 2, failCode: 9, failMessage: "stopped" })) {
      seen += 1;
    }
    return seen;
  });
  if (name.startsWith("grpc h2")) {
    results[`${name} client stream`] = await outcome(async () => (await client.collect(messages(["a", "b", "c"]))).rString);
    results[`${name} bidi`] = await outcome(async () => {
      const replies = [];
      for await (const reply of client.chat(messages(["x", "y"]))) {
        replies.push(reply.fString);
      }
      return replies;
    });
  }
}
console.log(JSON.stringify(results));
