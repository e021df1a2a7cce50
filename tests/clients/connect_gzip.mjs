// connect-node with gzip on both ways (sendCompression, acceptCompression)
// against the gateway: a unary call and a server stream over HTTP/1.1 and
// HTTP/2. Prints, as JSON, what each call got back.
// Usage: node connect_gzip.mjs BASE_URL ECHO_SET
import { echoService, gzipClients, outcome } from "./connect_common.mjs";

const [base, echoSet] = process.argv.slice(2);
const echo = echoService(echoSet);

const text = "gzip me ".repeat(1000);
const results = {};
for (const [key, client] of gzipClients(echo, base)) {
  results[`${key} unary`] = await outcome(async () => (await client.echo({ fString: text })).fString.length);
  results[`${key} stream`] = await outcome(async () => {
    let total = 0;
    for await (const message of client.echoStream({ message: { fString: text }, count: 3 })) {
      total += message.fString.length;
    }
    return total;
  });
}
console.log(JSON.stringify(results));
