#!/usr/bin/env python3
"""The import graph between src/'s top-level modules (`crate::x` paths;
test code — `tests.rs` files and inline `mod tests` — left out). Prints each module's dependencies and
exits 1 when any modules import each other around a circle.

    python3 scripts/module_graph.py
"""

import collections
import os
import re
import sys

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def graph():
    tops = sorted(n.removesuffix(".rs") for n in os.listdir(SRC) if n not in ("lib.rs", "main.rs"))
    edges = collections.defaultdict(set)
    for folder, _, files in os.walk(SRC):
        for name in files:
            if not name.endswith(".rs") or name == "tests.rs":
                continue
            path = os.path.join(folder, name)
            top = os.path.relpath(path, SRC).split(os.sep)[0].removesuffix(".rs")
            if top in ("lib", "main"):
                continue
            with open(path) as f:
                # An inline test module closes the file by convention.
                text = re.split(r"#\[cfg\(test\)\]\s*mod tests\s*\{", f.read())[0]
            names = re.findall(r"crate::(\w+)", text)
            for group in re.findall(r"use crate::\{([^}]*)\}", text):
                names += re.findall(r"(\w+)", group)
            edges[top].update(n for n in names if n != top and n in tops)
    return tops, edges


def circles(tops, edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in tops:
        if v not in index:
            visit(v)
    return found


def main():
    tops, edges = graph()
    for top in tops:
        print(f"{top} -> {', '.join(sorted(edges[top])) or '(nothing)'}")
    found = circles(tops, edges)
    for component in found:
        print(f"CIRCLE: {' ↔ '.join(component)}", file=sys.stderr)
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
