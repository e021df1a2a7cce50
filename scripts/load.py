#!/usr/bin/env python3
"""End-to-end load benchmark for protogate.

Starts the example library backend and the gateway (release builds), seeds
data, and drives them with oha (a real HTTP load generator) over HTTP/1.1 and
HTTP/2 at 1, 64 and 256 connections. For every run it reports requests/s,
p50/p99 latency and the gateway's CPU time per request (utime + stime from
/proc/<pid>/stat before and after), plus the gateway's peak RSS; a direct gRPC
call to the backend (oha over HTTP/2 with a framed protobuf body) is the floor.
It also measures idle RSS with the example set and with 10 000 routes.

The comparison (run first, and alone with --compare) puts the gateway's CPU per
request next to two references measured in the same interleaved run: a bare
hyper server (examples/bare_server.rs) answering the very same JSON bytes, the
front-end ceiling, and the backend called directly over gRPC, the floor. The
gateway and the bare server are pinned to CPU 0; oha and the backends to CPU 1.

    python3 scripts/load.py                 # everything (about 10 minutes)
    python3 scripts/load.py --quick         # 64 connections, HTTP/1.1 only
    python3 scripts/load.py --duration 5s   # per run (default 10s)
    python3 scripts/load.py --soak 10m      # 256 connections of mixed traffic, RSS and FDs sampled
    python3 scripts/load.py --compare       # only the gateway / bare server / backend ratios
    python3 scripts/load.py --composite     # a 3-call composite next to the same three REST calls

oha is used from PATH or .ci/tools/bin, else installed there with
`cargo install oha --locked`. Benchmarks measure; nothing here asserts.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def oha_binary():
    local = os.path.join(ROOT, ".ci", "tools", "bin", "oha")
    found = shutil.which("oha") or (local if os.path.exists(local) else None)
    if found:
        return found
    print("installing oha into .ci/tools (cargo install oha --locked)…", file=sys.stderr)
    subprocess.run(["cargo", "install", "oha", "--locked", "--root", os.path.join(ROOT, ".ci", "tools")], check=True)
    return local


def wait_for(port, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def memory_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def pinned(cpu):
    """The command prefix pinning a process to one CPU (none on one-CPU machines)."""
    return ["taskset", "-c", str(cpu)] if (os.cpu_count() or 1) >= 2 and shutil.which("taskset") else []


def request(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req) as response:
        return response.read()


def echo_body():
    """The 1.1 KB JSON POST: an Everything message mixing field kinds."""
    return json.dumps({"fString": "x" * 700, "fInt64": "-42", "fDouble": 2.5, "rString": ["a", "b", "c"],
                       "fNested": {"name": "nested", "count": 3, "color": "COLOR_RED"},
                       "mString": {"k1": "v1", "k2": "v2"}, "fBytes": "AAECAwQFBgcICQ==",
                       "wTimestamp": "2024-05-06T07:08:09Z", "rInt32": list(range(40))}).encode()


def echo_request(release):
    """`echo_body()` as a framed protobuf Everything, encoded with the
    descriptor set the build wrote (python protobuf); None without it."""
    import glob
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
    except ImportError:
        return None
    sets = sorted(glob.glob(os.path.join(release, "build", "protogate-*", "out", "everything.binpb")),
                  key=os.path.getmtime)
    if not sets:
        return None
    with open(sets[-1], "rb") as f:
        files = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    message = message_factory.GetMessageClass(pool.FindMessageTypeByName("protogate.test.v1.Everything"))()
    json_format.Parse(echo_body(), message)
    return grpc_frame(message.SerializeToString())


def grpc_frame(message):
    return b"\x00" + len(message).to_bytes(4, "big") + message


def get_shelf_request():
    name = b"shelves/1"
    return grpc_frame(b"\x0a" + bytes([len(name)]) + name)


class Stack:
    """The backend and the gateway, started from release builds."""

    def __init__(self, gateway_args=()):
        subprocess.run(["cargo", "build", "--release", "--bin", "protogate", "--example", "library_server",
                        "--example", "echo_server", "--example", "bare_server"], cwd=ROOT, check=True)
        self.backend_port, self.port, self.admin_port = free_port(), free_port(), free_port()
        self.echo_port = free_port()
        release = os.path.join(ROOT, "target", "release")
        self.release = release
        self.backend = subprocess.Popen(pinned(1) + [os.path.join(release, "examples", "library_server"),
                                         f"127.0.0.1:{self.backend_port}"], stdout=subprocess.DEVNULL)
        self.echo = subprocess.Popen(pinned(1) + [os.path.join(release, "examples", "echo_server"),
                                      f"127.0.0.1:{self.echo_port}"], stdout=subprocess.DEVNULL)
        wait_for(self.backend_port)
        wait_for(self.echo_port)
        self.gateway = subprocess.Popen(
            # PROTOGATE_BIN: another build of the gateway, for A/B runs.
            pinned(0) + [os.environ.get("PROTOGATE_BIN", os.path.join(release, "protogate")), "serve", "--descriptor", os.path.join(ROOT, "descriptors", "library.binpb"),
             "--upstream", f"http://127.0.0.1:{self.backend_port}", "--listen", f"127.0.0.1:{self.port}",
             "--admin-listen", f"127.0.0.1:{self.admin_port}", *gateway_args],
            # The access log stays on (the default), written where production sends it.
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")}, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        wait_for(self.port)
        wait_for(self.admin_port)
        self.base = f"http://127.0.0.1:{self.port}"

    def seed(self):
        """Shelves whose book lists are about 16 KB and 128 KB of JSON."""
        title = "A long title " * 30
        sizes = {}
        for shelf, books in (("bench16k", 36), ("bench128k", 290)):
            request("POST", f"{self.base}/v1/shelves?shelfId={shelf}", json.dumps({"theme": "bench"}).encode(),
                    {"content-type": "application/json"})
            for i in range(books):
                book = {"title": f"{title}{i}", "author": "Bench Author", "pageCount": i, "genre": "GENRE_FICTION"}
                request("POST", f"{self.base}/v1/shelves/{shelf}/books", json.dumps(book).encode(),
                        {"content-type": "application/json"})
            sizes[shelf] = len(request("GET", f"{self.base}/v1/shelves/{shelf}/books?pageSize=1000"))
        return sizes

    def register_echo(self):
        """The echo service, uploaded as .proto through the admin API."""
        path = "protogate/test/v1/everything.proto"
        with open(os.path.join(ROOT, "proto", path), "rb") as f:
            source = f.read()
        upload(f"http://127.0.0.1:{self.admin_port}/v1/descriptor-sets/echo?upstream=http://127.0.0.1:{self.echo_port}",
               path, source)

    def stop(self):
        for process in (self.gateway, self.backend, self.echo):
            process.terminate()
            process.wait()


def run_oha(oha, url, connections, duration, http2, method="GET", body=None, headers=()):
    command = pinned(1) + [oha, "--no-tui", "--output-format", "json", "-z", duration, "-c", str(connections), "-m", method]
    if http2:
        command += ["--http2", "-p", "1"]
    for header in headers:
        command += ["-H", header]
    body_file = None
    if body is not None:
        body_file = tempfile.NamedTemporaryFile(delete=False)
        body_file.write(body)
        body_file.close()
        command += ["-D", body_file.name]
    result = subprocess.run(command + [url], capture_output=True, text=True, check=True)
    if body_file:
        os.unlink(body_file.name)
    return json.loads(result.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", default="10s")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--soak", metavar="DURATION", help="run the soak scenario instead (e.g. 10m)")
    parser.add_argument("--compare", action="store_true", help="only the gateway / bare server / backend comparison")
    parser.add_argument("--composite", action="store_true",
                        help="only a composite of three calls (one dependent) against the three REST calls apart")
    parser.add_argument("--codecs", action="store_true",
                        help="only GetShelf over gRPC-Web with the protobuf codec (passed through) and the JSON "
                             "codec (transcoded by the gateway), 64 connections")
    parser.add_argument("--compression", action="store_true",
                        help="only the large answer with and without Accept-Encoding: gzip (64 connections)")
    args = parser.parse_args()
    oha = oha_binary()
    if args.composite:
        print_composite(composite(oha, args.duration))
        return
    stack = Stack()
    if args.soak:
        try:
            time.sleep(0.5)
            stack.register_echo()
            soak(stack, oha, args.soak)
        finally:
            stack.stop()
        return
    try:
        time.sleep(0.5)
        idle_rss = memory_kib(stack.gateway.pid, "VmRSS")
        stack.register_echo()
        time.sleep(0.5)
        if args.compression:
            print_compression(compression(stack, oha, args.duration))
            return
        if args.codecs:
            print_codecs(codecs(stack, oha, args.duration))
            return
        comparison = compare(stack, oha, args.duration)
        if args.compare:
            print_comparison(comparison)
            return
        streamed = slow_stream(stack) if not args.quick else None
        sizes = stack.seed()
        # The echo service answers with what it got and stores nothing, so
        # the POST runs do not grow the library the list runs read.
        body = echo_body()
        json_headers = ("content-type: application/json",)
        scenarios = [
            ("small GET", f"{stack.base}/v1/shelves/1", "GET", None, ()),
            (f"{len(body)} B JSON POST (echoed)", f"{stack.base}/test/v1/echo", "POST", body, json_headers),
            (f"{sizes['bench16k'] // 1024} KB JSON response", f"{stack.base}/v1/shelves/bench16k/books?pageSize=1000",
             "GET", None, ()),
            (f"{sizes['bench128k'] // 1024} KB JSON response", f"{stack.base}/v1/shelves/bench128k/books?pageSize=1000",
             "GET", None, ()),
            (f"{sizes['bench128k'] // 1024} KB JSON response, gzip",
             f"{stack.base}/v1/shelves/bench128k/books?pageSize=1000", "GET", None, ("accept-encoding: gzip",)),
        ]
        floor = ("direct gRPC GetShelf (floor)", f"http://127.0.0.1:{stack.backend_port}/library.v1.LibraryService/GetShelf",
                 "POST", get_shelf_request(), ("content-type: application/grpc", "te: trailers"))
        protocols = [False] if args.quick else [False, True]
        connection_counts = [64] if args.quick else [1, 64, 256]
        rows = []
        for name, url, method, body, headers in scenarios + [floor]:
            direct = name.startswith("direct")
            for http2 in ([True] if direct else protocols):
                for connections in connection_counts:
                    pid = stack.backend.pid if direct else stack.gateway.pid
                    before = cpu_seconds(pid)
                    report = run_oha(oha, url, connections, args.duration, http2, method, body, headers)
                    spent = cpu_seconds(pid) - before
                    summary = report["summary"]
                    count = sum(report.get("statusCodeDistribution", {}).values())
                    percentiles = report.get("latencyPercentiles", {})
                    rows.append({
                        "scenario": name, "http": "h2" if http2 else "h1", "connections": connections,
                        "rps": summary["requestsPerSec"], "p50_ms": percentiles.get("p50", 0) * 1000,
                        "p99_ms": percentiles.get("p99", 0) * 1000,
                        "cpu_us": spent / count * 1e6 if count else 0,
                        "statuses": report.get("statusCodeDistribution", {}),
                        "process": "backend" if direct else "gateway",
                    })
                    print(json.dumps(rows[-1]), file=sys.stderr)
        peak = memory_kib(stack.gateway.pid, "VmHWM")
        routes_rss = many_routes_rss(stack)
    finally:
        stack.stop()
    print_comparison(comparison)
    print()
    print("| scenario | HTTP | conns | req/s | p50 ms | p99 ms | CPU µs/req | statuses |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['scenario']} | {r['http']} | {r['connections']} | {r['rps']:.0f} | {r['p50_ms']:.3f} | "
              f"{r['p99_ms']:.3f} | {r['cpu_us']:.1f} ({r['process']}) | {r['statuses']} |")
    if streamed:
        size, seconds, before, peak_stream = streamed
        print(f"\n1 GiB stream to a 64 MB/s client: {size / 2**30:.2f} GiB in {seconds:.1f} s, gateway RSS "
              f"{before / 1024:.1f} MiB before, peak {peak_stream / 1024:.1f} MiB during (growth "
              f"{(peak_stream - before) / 1024:.1f} MiB)")
    print(f"\ngateway RSS: idle with the example set {idle_rss / 1024:.1f} MiB, peak under load {peak / 1024:.1f} MiB, "
          f"idle with 10 000 more routes {routes_rss / 1024:.1f} MiB")


# Shelf and book in parallel, then the book's author: three calls, one of
# them dependent on another's answer.
COMPOSITE = """
[[compose]]
route = "GET /bench/shelves/{shelf}/books/{book}:card"
[[compose.calls]]
name = "shelf"
method = "library.v1.LibraryService.GetShelf"
request = { name = "shelves/{shelf}" }
[[compose.calls]]
name = "book"
method = "library.v1.LibraryService.GetBook"
request = { name = "shelves/{shelf}/books/{book}" }
[[compose.calls]]
name = "author"
method = "library.v1.LibraryService.GetAuthor"
request = { name = "authors/{book.author}" }
[compose.response]
shelf = "shelf"
book = "book"
author = "author"
"""


def composite(oha, duration):
    """The composite, and the three REST calls it stands for one by one, at
    64 connections over HTTP/1.1: gateway and backend CPU per request."""
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as config:
        config.write(COMPOSITE)
    stack = Stack(("--config", config.name))
    rows = []
    try:
        time.sleep(0.5)
        scenarios = [
            ("composite (3 calls, 1 dependent)", "/bench/shelves/1/books/1:card"),
            ("GET shelf", "/v1/shelves/1"),
            ("GET book", "/v1/shelves/1/books/1"),
            ("GET author", "/v1/authors/Ursula%20K.%20Le%20Guin"),
        ]
        for name, path in scenarios:
            backend_before = cpu_seconds(stack.backend.pid)
            row = measure(oha, stack.gateway.pid, f"{stack.base}{path}", 64, duration, False,
                          headers=("accept-encoding: identity",))
            count = sum(row["statuses"].values())
            row["backend_cpu_us"] = (cpu_seconds(stack.backend.pid) - backend_before) / count * 1e6 if count else 0
            row["scenario"] = name
            print(json.dumps(row), file=sys.stderr)
            rows.append(row)
    finally:
        stack.stop()
        os.unlink(config.name)
    return rows


def print_composite(rows):
    print("| request (64 conns, h1) | req/s | p50 ms | p99 ms | gateway CPU µs/req | backend CPU µs/req | statuses |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['scenario']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['cpu_us']:.1f} | "
              f"{r['backend_cpu_us']:.1f} | {r['statuses']} |")
    apart = rows[1:]
    print(f"| the three REST calls together | | {sum(r['p50_ms'] for r in apart):.2f} (in sequence) | | "
          f"{sum(r['cpu_us'] for r in apart):.1f} | {sum(r['backend_cpu_us'] for r in apart):.1f} | |")


def compression(stack, oha, duration):
    """The large list answer as it is and gzip-compressed: CPU and bytes per request."""
    sizes = stack.seed()
    url = f"{stack.base}/v1/shelves/bench128k/books?pageSize=1000"
    rows = []
    for http2 in (False, True):
        for encoding in ("identity", "gzip", "br", "zstd"):
            result = measure(oha, stack.gateway.pid, url, 64, duration, http2, headers=(f"accept-encoding: {encoding}",))
            result.update({"scenario": f"{sizes['bench128k'] // 1024} KB JSON list", "encoding": encoding,
                           "http": "h2" if http2 else "h1"})
            print(json.dumps(result), file=sys.stderr)
            rows.append(result)
    return rows


def codecs(stack, oha, duration):
    """GetShelf over gRPC-Web: protobuf passed through, JSON transcoded both ways."""
    url = f"{stack.base}/library.v1.LibraryService/GetShelf"
    bodies = {"proto": get_shelf_request(), "json": grpc_frame(b'{"name":"shelves/1"}')}
    rows = []
    for http2 in (False, True):
        for codec, body in bodies.items():
            headers = (f"content-type: application/grpc-web+{codec}",)
            result = measure(oha, stack.gateway.pid, url, 64, duration, http2, "POST", body, headers)
            result.update({"codec": codec, "http": "h2" if http2 else "h1"})
            print(json.dumps(result), file=sys.stderr)
            rows.append(result)
    return rows


def print_codecs(rows):
    print("| gRPC-Web GetShelf (64 conns) | HTTP | req/s | p99 ms | gateway CPU µs/req |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| +{r['codec']} | {r['http']} | {r['rps']:.0f} | {r['p99_ms']:.2f} | {r['cpu_us']:.1f} |")


def print_compression(rows):
    print("| answer (64 conns) | HTTP | Accept-Encoding | req/s | p99 ms | gateway CPU µs/req | bytes/req on the wire |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['scenario']} | {r['http']} | {r['encoding']} | {r['rps']:.0f} | {r['p99_ms']:.2f} | "
              f"{r['cpu_us']:.0f} | {r['bytes']:.0f} |")


def measure(oha, pid, url, connections, duration, http2, method="GET", body=None, headers=()):
    """One oha run: requests/s, p99 and `pid`'s CPU µs per request."""
    before = cpu_seconds(pid)
    report = run_oha(oha, url, connections, duration, http2, method, body, headers)
    spent = cpu_seconds(pid) - before
    count = sum(report.get("statusCodeDistribution", {}).values())
    return {"rps": report["summary"]["requestsPerSec"], "cpu_us": spent / count * 1e6 if count else 0,
            "bytes": report["summary"].get("sizePerRequest") or 0,
            "p50_ms": report.get("latencyPercentiles", {}).get("p50", 0) * 1000,
            "p99_ms": report.get("latencyPercentiles", {}).get("p99", 0) * 1000,
            "statuses": report.get("statusCodeDistribution", {})}


def compare(stack, oha, duration):
    """The gateway, a bare hyper server answering the same bytes (ceiling)
    and the backend called directly over gRPC (floor), interleaved per row
    at 64 connections over HTTP/1.1 and HTTP/2."""
    body = echo_body()
    # oha asks for compressed answers by default; the bare server answers
    # the very bytes uncompressed, so both are asked for identity.
    identity = ("accept-encoding: identity",)
    json_headers = ("content-type: application/json",) + identity
    small = request("GET", f"{stack.base}/v1/shelves/1")
    echoed = request("POST", f"{stack.base}/test/v1/echo", body, {"content-type": "application/json"})
    files = []
    for answer in (small, echoed):
        file = tempfile.NamedTemporaryFile(delete=False)
        file.write(answer)
        file.close()
        files.append(file.name)
    bare_port = free_port()
    bare = subprocess.Popen(pinned(0) + [os.path.join(stack.release, "examples", "bare_server"), f"127.0.0.1:{bare_port}",
                                         f"/v1/shelves/1={files[0]}", f"/test/v1/echo={files[1]}"],
                            stdout=subprocess.DEVNULL)
    grpc = ("content-type: application/grpc", "te: trailers")
    echo_frame = echo_request(stack.release)
    scenarios = [
        (f"small GET ({len(small)} B answer)", "/v1/shelves/1", "GET", None, identity,
         (stack.backend, stack.backend_port, "/library.v1.LibraryService/GetShelf", get_shelf_request())),
        (f"{len(body)} B JSON POST ({len(echoed)} B answer)", "/test/v1/echo", "POST", body, json_headers,
         (stack.echo, stack.echo_port, "/protogate.test.v1.EchoService/Echo", echo_frame)),
    ]
    rows = []
    try:
        wait_for(bare_port)
        for name, path, method, payload, headers, (backend, backend_port, rpc, frame) in scenarios:
            for http2 in (False, True):
                row = {"scenario": name, "http": "h2" if http2 else "h1"}
                row["gateway"] = measure(oha, stack.gateway.pid, f"{stack.base}{path}", 64, duration, http2, method,
                                         payload, headers)
                row["bare"] = measure(oha, bare.pid, f"http://127.0.0.1:{bare_port}{path}", 64, duration, http2,
                                      method, payload, headers)
                row["direct"] = measure(oha, backend.pid, f"http://127.0.0.1:{backend_port}{rpc}", 64, duration, True,
                                        "POST", frame, grpc) if frame else None
                print(json.dumps(row), file=sys.stderr)
                rows.append(row)
    finally:
        bare.terminate()
        bare.wait()
        for name in files:
            os.unlink(name)
    return rows


def print_comparison(rows):
    print("| scenario (64 conns) | HTTP | gateway µs/req | bare hyper µs/req | gateway ÷ bare | "
          "backend direct µs/req | gateway req/s | bare req/s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        gateway, bare, direct = r["gateway"], r["bare"], r["direct"]
        ratio = gateway["cpu_us"] / bare["cpu_us"] if bare["cpu_us"] else 0
        floor = f"{direct['cpu_us']:.1f}" if direct else "n/a"
        print(f"| {r['scenario']} | {r['http']} | {gateway['cpu_us']:.1f} | {bare['cpu_us']:.1f} | {ratio:.1f}× | "
              f"{floor} | {gateway['rps']:.0f} | {bare['rps']:.0f} |")


def seconds_of(duration):
    units = {"s": 1, "m": 60, "h": 3600}
    return float(duration[:-1]) * units[duration[-1]] if duration[-1] in units else float(duration)


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def stream_loop(base, stop, counts):
    """REST server streams (NDJSON) one after another until `stop`."""
    body = json.dumps({"message": {"fString": "s" * 200}, "count": 50}).encode()
    while not stop.is_set():
        try:
            lines = request("POST", f"{base}/protogate.test.v1.EchoService/EchoStream", body,
                            {"content-type": "application/json"}).count(b"\n")
            counts["stream"] += 1 if lines == 50 else 0
            counts["stream_errors"] += 0 if lines == 50 else 1
        except OSError:
            counts["stream_errors"] += 1


def websocket_loop(port, stop, counts):
    """WebSocket server streams: a minimal RFC 6455 client (one masked text
    frame out, frames read until the close frame)."""
    import base64
    import struct
    message = json.dumps({"message": {"fString": "w" * 100}, "count": 20}).encode()
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                key = base64.b64encode(os.urandom(16)).decode()
                sock.sendall((f"GET /test/v1/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                              f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
                reader = sock.makefile("rb")
                while reader.readline() not in (b"\r\n", b""):
                    pass
                mask = os.urandom(4)
                sock.sendall(bytes([0x81, 0x80 | len(message)]) + mask if len(message) < 126 else
                             bytes([0x81, 0x80 | 126]) + struct.pack(">H", len(message)) + mask)
                sock.sendall(bytes(b ^ mask[i % 4] for i, b in enumerate(message)))
                frames = 0
                while True:
                    head = reader.read(2)
                    if len(head) < 2:
                        break
                    length = head[1] & 0x7F
                    if length == 126:
                        length = struct.unpack(">H", reader.read(2))[0]
                    elif length == 127:
                        length = struct.unpack(">Q", reader.read(8))[0]
                    reader.read(length)
                    if head[0] & 0x0F == 0x8:
                        break
                    frames += 1
                counts["websocket"] += 1 if frames == 20 else 0
                counts["websocket_errors"] += 0 if frames == 20 else 1
        except OSError:
            counts["websocket_errors"] += 1


def soak(stack, oha, duration):
    """256 connections of mixed traffic for `duration`: REST unary GETs and
    POSTs and native gRPC (oha), REST and WebSocket server streams (threads);
    RSS and open FDs sampled every 10 s. Flat means within 10 % of the first
    sample after a minute of warm-up."""
    import collections
    import threading
    total = seconds_of(duration)
    echo = json.dumps({"fString": "x" * 500, "rInt32": list(range(20))}).encode()
    loads = [
        (96, f"{stack.base}/v1/shelves/1", "GET", None, (), False),
        (64, f"{stack.base}/test/v1/echo", "POST", echo, ("content-type: application/json",), False),
        (64, f"{stack.base}/library.v1.LibraryService/GetShelf", "POST", get_shelf_request(),
         ("content-type: application/grpc", "te: trailers"), True),
    ]
    bodies, runs = [], []
    for connections, url, method, body, headers, http2 in loads:
        command = pinned(1) + [oha, "--no-tui", "--output-format", "json", "-z", duration, "-c", str(connections), "-m", method]
        command += ["--http2", "-p", "1"] if http2 else []
        for header in headers:
            command += ["-H", header]
        if body is not None:
            body_file = tempfile.NamedTemporaryFile(delete=False)
            body_file.write(body)
            body_file.close()
            bodies.append(body_file.name)
            command += ["-D", body_file.name]
        runs.append(subprocess.Popen(command + [url], stdout=subprocess.PIPE, text=True))
    stop, counts = threading.Event(), collections.Counter()
    threads = [threading.Thread(target=stream_loop, args=(stack.base, stop, counts)) for _ in range(16)]
    threads += [threading.Thread(target=websocket_loop, args=(stack.port, stop, counts)) for _ in range(16)]
    for thread in threads:
        thread.start()
    samples, started = [], time.time()
    while time.time() - started < total:
        time.sleep(10)
        pid = stack.gateway.pid
        samples.append((time.time() - started, memory_kib(pid, "VmRSS"), open_fds(pid)))
        print(f"soak t={samples[-1][0]:.0f}s rss={samples[-1][1] / 1024:.1f} MiB fds={samples[-1][2]}", file=sys.stderr)
    stop.set()
    for thread in threads:
        thread.join()
    statuses = collections.Counter()
    for run in runs:
        report = json.loads(run.communicate()[0])
        statuses.update(report.get("statusCodeDistribution", {}))
    for name in bodies:
        os.unlink(name)
    warm = [s for s in samples if s[0] >= 60] or samples
    base_rss, base_fds = warm[0][1], warm[0][2]
    top_rss, top_fds = max(s[1] for s in warm), max(s[2] for s in warm)
    flat = top_rss <= base_rss * 1.1 and top_fds <= base_fds * 1.1 + 5
    print(f"soak {duration}: unary statuses {dict(statuses)}, streams {counts['stream']} ok / "
          f"{counts['stream_errors']} failed, WebSocket {counts['websocket']} ok / {counts['websocket_errors']} failed")
    print(f"RSS after warm-up {base_rss / 1024:.1f} MiB, highest {top_rss / 1024:.1f} MiB; open FDs {base_fds}, "
          f"highest {top_fds}: {'flat' if flat else 'NOT FLAT'}")


def upload(url, path, source):
    boundary = "protogate-bench"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{path}\"; filename=\"{path}\"\r\n"
            "Content-Type: text/plain\r\n\r\n").encode() + source + f"\r\n--{boundary}--\r\n".encode()
    request("PUT", url, body, {"content-type": f"multipart/form-data; boundary={boundary}"})


def slow_stream(stack, rate="64M"):
    """A 1 GiB REST server stream read by a client limited to `rate`/s:
    the gateway's RSS growth shows whether backpressure holds end to end."""
    body = json.dumps({"message": {"fString": "x" * 65536}, "count": 16384}).encode()
    rss_before = memory_kib(stack.gateway.pid, "VmRSS")
    started = time.time()
    result = subprocess.run(["curl", "-sS", "--limit-rate", rate, "-o", "/dev/null", "-w", "%{size_download}",
                             "-H", "content-type: application/json", "--data-binary", "@-",
                             f"{stack.base}/protogate.test.v1.EchoService/EchoStream"],
                            input=body, capture_output=True, check=True)
    seconds = time.time() - started
    peak = memory_kib(stack.gateway.pid, "VmHWM")
    return int(result.stdout), seconds, rss_before, peak


def many_routes_rss(stack):
    """Registers a set of 10 000 routes through the admin API, then reads RSS."""
    lines = ['syntax = "proto3";', "package bench.v1;", 'import "google/api/annotations.proto";',
             "message Req { string name = 1; }", "service Many {"]
    for i in range(10_000):
        lines.append(f'  rpc M{i}(Req) returns (Req) {{ option (google.api.http) = {{ get: "/bench/{i}/{{name}}" }}; }}')
    lines.append("}")
    admin = f"http://127.0.0.1:{stack.admin_port}"
    upload(f"{admin}/v1/descriptor-sets/many", "many.proto", "\n".join(lines).encode())
    time.sleep(1)
    return memory_kib(stack.gateway.pid, "VmRSS")


if __name__ == "__main__":
    main()
