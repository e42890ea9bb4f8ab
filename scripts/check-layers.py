#!/usr/bin/env python3
"""Layer check: no import circle in src/, and the faces keep to the core.

Reads every `crate::`, `super::` and `self::` path in the non-test code of src/ (a `#[cfg(test)]`
module and files named `tests.rs` / `*_tests.rs` are skipped). For each
folder, its direct children (files and sub-folders; `mod.rs`/`lib.rs` is the
folder's own face and is left out) form a graph: X -> Y when code under X
names a path under Y. A circle in any of these graphs fails the check, so a
circle inside `store/` counts as much as one between `campaign` and `serve`.

Then the faces: no file under `src/serve/` or `src/cli/` may name the layers
below the core (store, engine, csv_input and report).

Exit 0 when clean, 1 with every circle and crossing listed.
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
FACES = ["serve", "cli"]
BELOW_CORE = ["store", "engine", "runner", "csv_input", "report"]


def module_path(rel):
    """src-relative file path -> module path list ('store/mod.rs' -> ['store'])."""
    parts = rel[:-3].split(os.sep)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return parts


def strip_tests(text):
    """Drop `#[cfg(test)] mod x { ... }` bodies and comments."""
    text = re.sub(r"//[^\n]*", "", text)
    out = []
    i = 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth = 1
        j = m.end()
        while j < len(text) and depth:
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def expand_use(body):
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
    body = body.strip()
    m = re.match(r"^([\w:]*?)(::)?\{(.*)\}$", body, re.S)
    if not m:
        return [re.split(r"\s+as\s+", body)[0].strip()]
    prefix = m.group(1)
    inner = m.group(3)
    items, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    items.append(cur)
    res = []
    for it in items:
        it = it.strip()
        if not it:
            continue
        for sub in expand_use(it):
            res.append(prefix + "::" + sub if prefix and sub != "self" else prefix or sub)
    return res


def crate_paths(text, here):
    """Every `crate::`, `super::` and `self::` path, made absolute."""
    paths = []
    for m in re.finditer(r"\buse\s+((?:crate|super|self)::[^;]*);", text, re.S):
        paths += expand_use(m.group(1))
    for m in re.finditer(r"(?<![\w:])((?:crate|super|self)::(?:\w+::)*\w+)", text):
        paths.append(m.group(1))
    out = []
    for p in paths:
        parts = p.split("::")
        if parts[0] == "crate":
            parts = parts[1:]
        else:
            base = list(here)
            while parts and parts[0] in ("super", "self"):
                if parts[0] == "super":
                    base = base[:-1]
                parts = parts[1:]
            parts = base + parts
        if parts:
            out.append(parts)
    return out


def main():
    modules = {}
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            if not f.endswith(".rs"):
                continue
            if f == "tests.rs" or f.endswith("_tests.rs") or f == "test_server.rs":
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), ROOT)
            with open(os.path.join(ROOT, rel), encoding="utf-8") as fh:
                here = module_path(rel)
                # `self::`/`super::` in a mod.rs count from the folder itself
                modules[rel] = (here, crate_paths(strip_tests(fh.read()), here))
    known = {tuple(mp) for mp, _ in modules.values()}

    def resolve(path):
        """Longest prefix of `path` that is a module."""
        for n in range(len(path), 0, -1):
            if tuple(path[:n]) in known:
                return path[:n]
        return []

    # folder -> {child -> set(child)}
    graphs = {}
    for rel, (src, paths) in sorted(modules.items()):
        for p in paths:
            dst = resolve(p)
            if not dst:
                continue
            # the deepest folder both live under
            k = 0
            while k < min(len(src), len(dst)) and src[k] == dst[k]:
                k += 1
            if k == len(src) or k == len(dst):
                continue  # a module and its own ancestor or descendant
            folder = tuple(src[:k])
            g = graphs.setdefault(folder, {})
            g.setdefault(src[k], set()).add(dst[k])

    problems = []
    for folder, g in sorted(graphs.items()):
        for cycle in find_cycles(g):
            where = "/".join(folder) or "src"
            problems.append(f"circle in {where}/: " + " -> ".join(cycle + [cycle[0]]))

    for rel, (src, paths) in sorted(modules.items()):
        if not src or src[0] not in FACES:
            continue
        for p in paths:
            if p[0] in BELOW_CORE:
                problems.append(f"face crosses the core: src/{rel} names crate::{'::'.join(p)}")

    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} layer problem(s)")
        return 1
    print("layers: no import circle, faces reach only the core")
    return 0


def find_cycles(g):
    """One representative cycle per strongly connected component (Tarjan)."""
    index, low, stack, on, sccs = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            strong(v)
    cycles = []
    for comp in sccs:
        # a shortest walk back to the start, inside the component
        start = comp[0]
        members = set(comp)
        prev = {start: None}
        queue = [start]
        found = None
        while queue and not found:
            v = queue.pop(0)
            for w in sorted(g.get(v, ())):
                if w == start:
                    found = v
                    break
                if w in members and w not in prev:
                    prev[w] = v
                    queue.append(w)
        path = []
        v = found
        while v is not None:
            path.append(v)
            v = prev[v]
        cycles.append(list(reversed(path)) + ([] if len(comp) == len(path) else [f"(+{len(comp) - len(path)} more: {', '.join(c for c in comp if c not in path)})"]))
    return cycles


if __name__ == "__main__":
    sys.exit(main())
