// Calls protogate's demo four ways. No generated code: the gRPC-Web client is
// built at run time from the checked-in descriptor set (library.binpb).
import { createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { createFileRegistry, fromBinary, toJson } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";

const params = new URLSearchParams(location.search);
const gateway = (params.get("gateway") || "http://127.0.0.1:8080").replace(/\/$/, "");
const descriptors = params.get("descriptors") || "library.binpb";
document.getElementById("gateway").textContent = gateway;

function show(id, text, isError = false) {
  const item = document.createElement("li");
  item.textContent = text;
  if (isError) item.className = "error";
  document.getElementById(id).append(item);
}

async function rest() {
  const response = await fetch(`${gateway}/v1/shelves/1/books`);
  if (!response.ok) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
  for (const book of (await response.json()).books) show("rest", book.title);
}

function sse() {
  return new Promise((resolve, reject) => {
    const source = new EventSource(`${gateway}/v1/shelves/1/books:stream`);
    let received = 0;
    source.onmessage = (event) => { received += 1; show("sse", JSON.parse(event.data).title); };
    source.addEventListener("error", (event) => {
      source.close(); // the stream ended (or failed): do not let EventSource reconnect
      if (event.data) reject(new Error(event.data));
      else if (received > 0) resolve();
      else reject(new Error("the event stream failed"));
    });
  });
}

function websocket() {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`${gateway.replace(/^http/, "ws")}/v1/books:lookup`);
    const names = ["shelves/1/books/3", "shelves/2/books/1"];
    socket.onopen = () => socket.send(JSON.stringify({ name: names[0] }));
    socket.onmessage = (event) => {
      show("websocket", JSON.parse(event.data).title);
      const next = names[document.getElementById("websocket").children.length];
      socket.send(next ? JSON.stringify({ name: next }) : ""); // an empty frame ends the requests
    };
    socket.onclose = (event) => (event.code === 1000 ? resolve() : reject(new Error(`closed ${event.code}: ${event.reason}`)));
  });
}

async function grpcWeb() {
  const bytes = new Uint8Array(await (await fetch(descriptors)).arrayBuffer());
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, bytes));
  const service = registry.getService("library.v1.LibraryService");
  const client = createClient(service, createGrpcWebTransport({ baseUrl: gateway }));
  const book = await client.getBook({ name: "shelves/2/books/1" });
  show("grpcweb", `${book.title} (${toJson(registry.getMessage("library.v1.Book"), book).copiesSold} sold)`);
  for await (const streamed of client.streamBooks({ parent: "shelves/1" })) show("grpcweb", streamed.title);
}

const calls = { rest, sse, websocket, grpcweb: grpcWeb };
const results = {};
await Promise.all(
  Object.entries(calls).map(async ([id, call]) => {
    try {
      await call();
      results[id] = "ok";
    } catch (error) {
      results[id] = String(error);
      show(id, String(error), true);
    }
  }),
);
document.body.dataset.results = JSON.stringify(results);
document.body.dataset.done = "1";
