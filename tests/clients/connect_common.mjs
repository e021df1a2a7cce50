// What the connect-node scripts share: the echo service from a descriptor
// set file, and a call's outcome as its value or "Code: message".
import { readFileSync } from "node:fs";
import { ConnectError, Code } from "@connectrpc/connect";
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
