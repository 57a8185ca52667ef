#!/usr/bin/env python3
"""Prints the import graph of src/ (one node per file) and fails if it has a cycle.

A file's edges are the `crate::a::b` paths it names (outside its #[cfg(test)] module), resolved to
the deepest existing file; `super::x` paths resolve the same way. Run from the repository root."""
import os, re, sys

SRC = "src"
files = {}
for root, _, names in os.walk(SRC):
    for n in names:
        if n.endswith(".rs"):
            p = os.path.join(root, n)
            mod = os.path.relpath(p, SRC)[:-3].replace(os.sep, "::")
            mod = mod[:-len("::mod")] if mod.endswith("::mod") else mod
            if mod in ("lib", "main"):
                continue
            files[mod] = p

def resolve(path):
    parts = path.split("::")
    for i in range(len(parts), 0, -1):
        cand = "::".join(parts[:i])
        if cand in files:
            return cand
    return None

edges = {m: set() for m in files}
for mod, p in files.items():
    text = open(p).read()
    text = text.split("#[cfg(test)]")[0]
    parent = mod.rsplit("::", 1)[0] if "::" in mod and not files[mod].endswith("mod.rs") else mod
    for m in re.finditer(r"crate::([a-z_][a-z0-9_]*(?:::[a-z_][a-z0-9_]*)*)", text):
        t = resolve(m.group(1))
        if t and t != mod:
            edges[mod].add(t)
    for m in re.finditer(r"super::([a-z_][a-z0-9_]*(?:::[a-z_][a-z0-9_]*)*)", text):
        t = resolve(parent + "::" + m.group(1)) if "::" in mod else None
        if t and t != mod:
            edges[mod].add(t)
    # `use crate::{a, b}` groups
    for m in re.finditer(r"use crate::\{([^}]*)\}", text):
        for name in m.group(1).split(","):
            t = resolve(name.strip().split("::")[0] if "::" not in name else name.strip())
            if t and t != mod:
                edges[mod].add(t)

# A module that is a directory (x/mod.rs) depends on its children only by declaring them.
WHITE, GREY, BLACK = 0, 1, 2
colour = {m: WHITE for m in files}
stack = []
cycle = None
def visit(m):
    global cycle
    colour[m] = GREY
    stack.append(m)
    for t in sorted(edges[m]):
        if cycle:
            return
        if colour[t] == GREY:
            cycle = stack[stack.index(t):] + [t]
            return
        if colour[t] == WHITE:
            visit(t)
    stack.pop()
    colour[m] = BLACK

for m in sorted(files):
    if colour[m] == WHITE and not cycle:
        visit(m)
if "-v" in sys.argv:
    for m in sorted(edges):
        print(f"{m} -> {', '.join(sorted(edges[m]))}")
if cycle:
    print("import cycle: " + " -> ".join(cycle))
    sys.exit(1)
print(f"no import cycle among {len(files)} files")
