// What the connect-node scripts share: the echo service from a descriptor
// set file, and a call's outcome as its value or "Code: message".
import { readFileSync } from "node:fs";
import { ConnectError, Code, createClient } from "@connectrpc/connect";
import { createConnectTransport, compressionGzip } from "@connectrpc/connect-node";
import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";

export function echoService(setPath) {
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(setPath)));
  return registry.getService("protogate.test.v1.EchoService");
}

export async function outcome(call) {
  try {
    return await call();
  } catch (e) {
    const error = ConnectError.from(e);
    return `${Code[error.code]}: ${error.rawMessage}`;
  }
}

// A client of `service` for each of HTTP/1.1 and HTTP/2 with the JSON and
// the protobuf codec, gzip on both ways for every message: ["1.1 json", client], …
export function* gzipClients(service, baseUrl) {
  for (const httpVersion of ["1.1", "2"]) {
    for (const useBinaryFormat of [false, true]) {
      const transport = createConnectTransport({
        baseUrl,
        httpVersion,
        useBinaryFormat,
        sendCompression: compressionGzip,
        acceptCompression: [compressionGzip],
        compressMinBytes: 0,
      });
      yield [`${httpVersion} ${useBinaryFormat ? "proto" : "json"}`, createClient(service, transport)];
    }
  }
}
