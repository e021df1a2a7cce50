// connect-node client and bidi streams against the gateway, gzip on both
// ways, over HTTP/1.1 and HTTP/2, JSON and protobuf. Prints, as JSON, what
// each call got back.
// Usage: node connect_streams.mjs BASE_URL ECHO_SET
import { echoService, gzipClients, outcome } from "./connect_common.mjs";

const [base, echoSet] = process.argv.slice(2);
const echo = echoService(echoSet);

async function* messages(texts) {
  for (const fString of texts) {
    yield { fString };
  }
}

// Sends the next message only once the answer to the last one is in: it
// finishes only if the gateway passes each message on while the request
// is still open (full duplex).
async function pingPong(client, count) {
  const answered = [];
  let wake = () => {};
  async function* requests() {
    for (let i = 0; i < count; i++) {
      yield { fString: `ping ${i}` };
      while (answered.length <= i) {
        await new Promise((resolve) => (wake = resolve));
      }
    }
  }
  for await (const reply of client.chat(requests())) {
    answered.push(reply.fString);
    wake();
  }
  return answered;
}

const long = "gzip me ".repeat(500);
const results = {};
for (const [key, client] of gzipClients(echo, base)) {
  results[`${key} client stream`] = await outcome(async () => {
    const reply = await client.collect(messages(["a", "b", long]));
    return [reply.rString.length, reply.rString[0], reply.fString.length];
  });
  // Half duplex: everything sent, then everything read.
  results[`${key} bidi`] = await outcome(async () => {
    const replies = [];
    for await (const reply of client.chat(messages(["x", "y", long]))) {
      replies.push(reply.fString.length);
    }
    return replies;
  });
  results[`${key} bidi failure`] = await outcome(async () => {
    for await (const reply of client.chat((async function* () {
      yield { fString: "fine" };
      yield { fString: "refused", fInt32: 7 };
    })())) {
      void reply;
    }
    return "no error";
  });
  if (key.startsWith("2 ")) {
    results[`${key} ping pong`] = await outcome(() => pingPong(client, 3));
  }
}
console.log(JSON.stringify(results));
