#!/usr/bin/env python3
"""Instructions per request of the gateway, under callgrind.

CPU time per request on a shared VM moves by about 15 % between runs of one
build; instruction counts do not, so A/B comparisons of changes use this.
The gateway runs under `valgrind --tool=callgrind` (release build, or the
binary in PROTOGATE_BIN); for each path: 300 requests of warm-up, a dump,
N requests at 8 connections, a dump; the second dump holds exactly the
measured requests (callgrind zeroes its counters at each dump).

    python3 scripts/instructions.py /v1/shelves/1
    python3 scripts/instructions.py --composite /bench/shelves/1/books/1:card
    PROTOGATE_BIN=/tmp/old-protogate python3 scripts/instructions.py /v1/shelves/1

Prints one line per path; `callgrind_annotate FILE` on the named file shows
where the instructions went. Measures only; nothing asserts.
"""

import argparse
import glob
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load  # noqa: E402

OUT = os.path.join(tempfile.gettempdir(), "protogate-callgrind")


def dump(pid):
    before = set(glob.glob(f"{OUT}/cg.{pid}.*"))
    subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True, check=True)
    for _ in range(100):
        new = set(glob.glob(f"{OUT}/cg.{pid}.*")) - before
        if new:
            time.sleep(0.5)
            return new.pop()
        time.sleep(0.1)
    raise RuntimeError("callgrind wrote no dump")


def total(path):
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="GET paths to measure")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--http2", action="store_true")
    parser.add_argument("--composite", action="store_true", help="load the load benchmark's composite config")
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    binary = os.environ.get("PROTOGATE_BIN", os.path.join(load.ROOT, "target", "release", "protogate"))
    wrapper = os.path.join(OUT, "callgrind.sh")
    with open(wrapper, "w") as f:
        f.write(f'#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file={OUT}/cg.%p "{binary}" "$@"\n')
    os.chmod(wrapper, 0o755)
    os.environ["PROTOGATE_BIN"] = wrapper
    gateway_args = ()
    if args.composite:
        config = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
        config.write(load.COMPOSITE)
        config.close()
        gateway_args = ("--config", config.name)
    stack = load.Stack(gateway_args)
    try:
        time.sleep(3)
        oha = load.oha_binary()
        for path in args.paths:
            command = [oha, "--no-tui", "--output-format", "json", "-c", "8", "-H", "accept-encoding: identity"]
            if args.http2:
                command += ["--http2", "-p", "1"]
            subprocess.run(command + ["-n", "300", stack.base + path], capture_output=True, check=True)
            dump(stack.gateway.pid)
            subprocess.run(command + ["-n", str(args.requests), stack.base + path], capture_output=True, check=True)
            measured = dump(stack.gateway.pid)
            print(f"{path} {'h2' if args.http2 else 'h1'}: {total(measured) / args.requests:.0f} instructions/request "
                  f"({measured})", flush=True)
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
