"""Fail when files of src/ import each other in a cycle.

Each file is a module (`src/a/b.rs` and `src/a/b/mod.rs` are `a::b`; the binary's `main.rs` and
`cli/` live apart from the library). An edge goes from a file to every module that a path in its
code (comments aside) names: `crate::x::y`, `super::y`, `self::y`, and in the binary also
`circuitdiff::x`, resolved to the deepest existing module. A module's own ancestors are not
imports (a parent `mod.rs` declares its children). Prints each cycle; exits 1 if there is one.
"""

import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"


def module_of(path: Path) -> tuple:
    """The module path of a file; the binary's files (main.rs, cli/) live under `bin`."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    if parts == ["lib"]:
        return ()
    if parts == ["main"]:
        return ("bin",)
    if parts[0] == "cli":
        return ("bin",) + tuple(parts)
    return tuple(parts)


def main() -> int:
    files = {module_of(p): p for p in SRC.rglob("*.rs")}
    modules = set(files)
    path_re = re.compile(r"\b(crate|super|self|circuitdiff)((?:::[a-z_][a-z0-9_]*)+)")
    edges = {}
    for mod, path in files.items():
        is_bin = mod[:1] == ("bin",)
        targets = set()
        code = re.sub(r"//.*", "", path.read_text())
        for root, rest in path_re.findall(code):
            names = rest.split("::")[1:]
            if root == "crate":
                full = (["bin"] if is_bin else []) + names
            elif root == "circuitdiff" and is_bin:
                full = names
            elif root == "super":
                full = list(mod[:-1]) + names
            elif root == "self":
                full = list(mod) + names
            else:
                continue
            # The deepest module the path names; a module's own ancestors are not imports.
            for k in range(len(full), 0, -1):
                cand = tuple(full[:k])
                if cand in modules:
                    if cand != mod[: len(cand)]:
                        targets.add(cand)
                    break
        edges[mod] = targets
    # Tarjan's strongly connected components.
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
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
                out.append(comp)

    sys.setrecursionlimit(10000)
    for v in list(edges):
        if v not in index:
            visit(v)
    for comp in out:
        print("import cycle:", " ".join("::".join(m) or "crate" for m in sorted(comp)))
    print(f"{len(edges)} files, {sum(len(t) for t in edges.values())} imports, {len(out)} cycles")
    return 1 if out else 0


if __name__ == "__main__":
    sys.exit(main())
