"""Fail when files of src/ import each other in a cycle.

Each file is a module (`src/a/b.rs` and `src/a/b/mod.rs` are `a::b`; the binary's `main.rs` and
`cli/` live apart from the library). An edge goes from a file to every module that a path in its
code (comments aside) names: `crate::x::y`, `super::y`, `self::y`, a child declared with
`mod y;` and named as `y::…`, and in the binary also `circuitdiff::x`, resolved to the deepest
existing module. `use` trees (`super::{a, B}`) are expanded, and `super` inside an inline module
(`mod tests { use super::*; }`) counts from that inline module.

A parent `mod.rs` that declares its children does not import them. A path from a module to one of
its own ancestors is an import only when it names an item that the ancestor defines in its own code
(a `fn`, `struct`, `enum`, `trait`, `type`, `const`, `static`, `union`, macro or inline module), or
glob-imports an ancestor that defines any: a name that the ancestor only re-exports from elsewhere
is not its code. Such an import closes a cycle when the ancestor also imports the child.

Prints each cycle; exits 1 if there is one. `--self-test` checks the script on synthetic trees.
"""

import re
import sys
import tempfile
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"

ROOTS = ("crate", "super", "self", "circuitdiff")
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
ITEM_RE = re.compile(
    r"\b(?:fn|struct|enum|trait|type|const|static|union|macro_rules!)\s+(" + IDENT + r")"
    r"|\bmod\s+(" + IDENT + r")\s*\{"
)
CHILD_RE = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;", re.M)
INLINE_MOD_RE = re.compile(r"\bmod\s+" + IDENT + r"\s*\{")


def module_of(src: Path, path: Path) -> tuple:
    """The module path of a file; the binary's files (main.rs, cli/) live under `bin`."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    if parts == ["lib"]:
        return ()
    if parts == ["main"]:
        return ("bin",)
    if parts[0] == "cli":
        return ("bin",) + tuple(parts)
    return tuple(parts)


def strip_comments(text: str) -> str:
    """The code with comments and string and char literals blanked (offsets kept)."""
    out, i, n = list(text), 0, len(text)

    def blank(a, b):
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
        elif (m := re.compile(r'r(#*)"').match(text, i)) and not (i and text[i - 1].isalnum()):
            close = '"' + m.group(1)
            j = text.find(close, m.end())
            j = n if j < 0 else j + len(close)
        elif text[i] == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j += 1
        elif m := re.compile(r"'(?:\\.[^']*|[^'\\])'").match(text, i):
            j = m.end()
        else:
            i += 1
            continue
        blank(i, j)
        i = j
    return "".join(out)


def inline_depths(code: str) -> list:
    """For each offset-ordered inline module `mod x {`, its (start, end) span in the code."""
    spans = []
    for m in INLINE_MOD_RE.finditer(code):
        depth, i = 0, m.end() - 1
        while i < len(code):
            if code[i] == "{":
                depth += 1
            elif code[i] == "}":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        spans.append((m.start(), i))
    return spans


def split_top(text: str) -> list:
    """`a, b::{c, d}` split at its top-level commas."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "{") - (ch == "}")
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def expand(tree: str) -> list:
    """The paths of a `use` tree or plain path, each a list of segments (`*` for a glob)."""
    tree = re.sub(r"\s+as\s+" + IDENT + r"\s*$", "", tree.strip())
    brace = tree.find("{")
    if brace < 0:
        return [[s.strip() for s in tree.split("::") if s.strip()]]
    head = [s.strip() for s in tree[:brace].split("::") if s.strip()]
    out = []
    for part in split_top(tree[brace + 1 : tree.rfind("}")]):
        for sub in expand(part):
            out.append(head if sub == ["self"] else head + sub)
    return out


SEGMENT_RE = re.compile(r"\s*::\s*(" + IDENT + r"|\*|\{)")


def path_at(code: str, start: int) -> str:
    """The path text beginning at `start`: `a::b::{c, d::*}`, braces balanced."""
    i = re.compile(IDENT).match(code, start).end()
    while m := SEGMENT_RE.match(code, i):
        if m.group(1) != "{":
            i = m.end()
            continue
        depth, j = 0, m.end() - 1
        while j < len(code):
            depth += (code[j] == "{") - (code[j] == "}")
            if depth == 0:
                break
            j += 1
        return code[start : j + 1]
    return code[start:i]


def paths_of(code: str, children: set) -> list:
    """Every (root, segments, inline depth) that the code names."""
    spans = inline_depths(code)
    names = ROOTS + tuple(sorted(children))
    start_re = re.compile(r"(?<![\w:])(" + "|".join(map(re.escape, names)) + r")\s*::")
    found = []
    for m in start_re.finditer(code):
        depth = sum(1 for s, e in spans if s < m.start() < e)
        text = path_at(code, m.start())
        for segs in expand(text):
            if segs and segs[0] == m.group(1):
                found.append((segs[0], segs[1:], depth))
    return found


def own_items(code: str) -> set:
    """The names a file defines in its own code."""
    return {a or b for a, b in ITEM_RE.findall(code)}


def edges_of(src: Path) -> dict:
    """Each module's imports."""
    files = {module_of(src, p): p for p in src.rglob("*.rs")}
    modules = set(files)
    codes = {mod: strip_comments(path.read_text()) for mod, path in files.items()}
    items = {mod: own_items(code) for mod, code in codes.items()}
    edges = {}
    for mod, code in codes.items():
        is_bin = mod[:1] == ("bin",)
        children = {c for c in CHILD_RE.findall(code) if mod + (c,) in modules}
        targets = set()
        for root, names, depth in paths_of(code, children):
            if root == "crate":
                full = (["bin"] if is_bin else []) + names
            elif root == "circuitdiff":
                if not is_bin:
                    continue
                full = names
            elif root == "super":
                # `super` in an inline module at depth d starts from the file's module.
                up = 1 - depth
                while names[:1] == ["super"]:
                    names, up = names[1:], up + 1
                if up > len(mod):
                    continue
                full = list(mod[: len(mod) - up] if up > 0 else mod) + names
            elif root == "self":
                full = list(mod) + names
            else:
                full = list(mod) + [root] + names
            for k in range(len(full), 0, -1):
                cand = tuple(full[:k])
                if cand not in modules:
                    continue
                if cand != mod[: len(cand)]:
                    targets.add(cand)
                elif cand != mod and len(full) > k:
                    item = full[k]
                    if item in items[cand] or item == "*" and items[cand]:
                        targets.add(cand)
                break
        edges[mod] = targets
    return edges


def cycles(edges: dict) -> list:
    """The strongly connected components of more than one module (Tarjan)."""
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
                out.append(sorted("::".join(m) or "crate" for m in comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(out)


SELF_TESTS = [
    # A face that declares and re-exports; its child imports a re-exported name: no cycle.
    (
        {
            "lib.rs": "pub mod a;\n",
            "a/mod.rs": "mod b;\nmod c;\npub use b::Thing;\n",
            "a/b.rs": "pub struct Thing;\n",
            "a/c.rs": "use super::Thing;\nfn f(_: Thing) {}\n",
        },
        [],
    ),
    # The parent defines an item, uses its child, and the child imports the item back.
    (
        {
            "lib.rs": "pub mod a;\n",
            "a/mod.rs": "mod b;\npub struct Own;\nfn g() { b::h(); }\n",
            "a/b.rs": "use super::{Own};\npub fn h() {}\n",
        },
        [["a", "a::b"]],
    ),
    # The same through `crate::` and a glob.
    (
        {
            "lib.rs": "pub mod a;\n",
            "a/mod.rs": "pub mod b;\npub fn own() {}\nuse self::b::h;\n",
            "a/b.rs": "use crate::a::*;\npub fn h() {}\n",
        },
        [["a", "a::b"]],
    ),
    # The child imports the parent's item, but the parent only declares the child: no cycle.
    (
        {
            "lib.rs": "pub mod a;\n",
            "a/mod.rs": "pub mod b;\npub struct Own;\n",
            "a/b.rs": "use super::Own;\n",
        },
        [],
    ),
    # `use super::*` in an inline test module names the file's own module, not its parent.
    (
        {
            "lib.rs": "pub mod a;\n",
            "a/mod.rs": "mod b;\npub struct Own;\nfn g() { b::h(); }\n",
            "a/b.rs": "pub fn h() {}\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n",
        },
        [],
    ),
    # A name only in a comment or a string is no import; `super::super` reaches the grandparent.
    (
        {
            "lib.rs": "pub mod a;\n",
            "a/mod.rs": "pub mod b;\npub fn own() {}\nfn g() { b::c::h(); }\n",
            "a/b/mod.rs": "pub mod c;\n// use super::own;\nconst S: &str = \"super::own\";\n",
            "a/b/c.rs": "pub fn h() { super::super::own() }\n",
        },
        [["a", "a::b::c"]],
    ),
    # Two siblings importing each other, as before.
    (
        {
            "lib.rs": "pub mod x;\npub mod y;\n",
            "x.rs": "pub fn f() { crate::y::g() }\n",
            "y.rs": "pub fn g() { crate::x::f() }\n",
        },
        [["x", "y"]],
    ),
]


def self_test() -> int:
    """Run the script on each synthetic tree and compare the cycles found with the expected."""
    failed = 0
    for i, (tree, want) in enumerate(SELF_TESTS):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            for name, text in tree.items():
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                (root / name).write_text(text)
            got = cycles(edges_of(root))
        if got != want:
            print(f"self-test {i}: expected cycles {want}, found {got}")
            failed += 1
    print(f"{len(SELF_TESTS)} self-tests, {failed} failed")
    return 1 if failed else 0


def main() -> int:
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    edges = edges_of(SRC)
    found = cycles(edges)
    for comp in found:
        print("import cycle:", " ".join(comp))
    print(f"{len(edges)} files, {sum(len(t) for t in edges.values())} imports, {len(found)} cycles")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
