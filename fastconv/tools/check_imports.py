"""The import rules of fastconv, checked over the source (``ast``; nothing is imported).

``python -m fastconv.tools.check_imports`` reports, for every module under ``fastconv/``:

* ``cycle``: a strongly connected component of the graph of module-level imports;
* ``runtime-cycle``: one of the graph that adds the imports inside functions and the imports by
  string (the cycles a call can close at run time);
* ``function-import``: an import inside a function of anything but an optional dependency (a
  third-party package that ``[project] dependencies`` of pyproject.toml does not list);
* ``upward``: an import from a lower tier into a higher one (``TIER_ORDER``, ``TIERS``);
* ``string-import``: ``importlib.import_module`` or ``__import__`` of a fastconv module;
* ``untiered``: a module that ``TIERS`` does not place.

Every violation that ``import_allowlist.txt`` (next to this file) does not list fails the check,
and so does every entry of that list that no longer occurs: the list only shrinks.

Edges follow grimp and import-linter: ``from a import b`` is an edge to ``a.b`` when that is a
module, else to ``a``; the parent packages that Python runs first are not edges. Imports under
``if TYPE_CHECKING:`` are skipped. A call of ``import_module``/``__import__`` on a name that is
not a literal imports, as far as the check can tell, every fastconv module that a string
constant of the calling module names.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10: the two arrays the check needs are read with a pattern
    tomllib = None

#: The tiers, highest first: a module may import its own tier and the tiers after it.
TIER_ORDER = ("tools", "io", "models", "layers", "ops", "tensor", "backends", "core")

#: Module (or package prefix) -> tier; the longest matching prefix wins. Names are relative to
#: the top package (``""`` is the top package's ``__init__``).
TIERS = {
    # entry points and applications built on the whole library
    "tools": "tools", "cli": "tools", "__main__": "tools", "predictor": "tools",
    "distributed": "tools", "applications": "tools",
    # model file formats and data sets
    "saving": "io", "keras_io": "io", "onnx": "io", "datasets": "io",
    # models and what trains or runs them
    "models": "models", "losses": "models", "metrics": "models", "optimizers": "models",
    "callbacks": "models", "inference": "models", "warmup": "models", "utils": "models",
    # layers and the Keras vocabularies they are configured with
    "layers": "layers", "activations": "layers", "initializers": "layers",
    # operations with gradients
    "ops": "ops", "functional": "ops",
    # the tensor, and the top package, which re-exports only the tensor and the backends
    "tensor": "tensor", "": "tensor",
    "backends": "backends",
    # tensor-independent basics; fastconv.io is the byte level (safe reading, atomic writing,
    # the HDF5 and ONNX container parsers), which imports nothing above core
    "config": "core", "_version": "core", "geometry": "core", "winograd": "core",
    "random": "core", "allocation": "core", "interrupts": "core", "progbar": "core",
    "io": "core",
}

#: Third-party packages that come with a required dependency (numba needs llvmlite).
IMPLIED_REQUIRED = frozenset({"llvmlite"})
#: Optional distributions that install into the namespace of a required one.
OPTIONAL_NAMESPACES = ("numba.cuda",)
#: The kinds of violation, in the order the report lists them.
KINDS = ("untiered", "cycle", "runtime-cycle", "upward", "function-import", "string-import")

HERE = Path(__file__).resolve().parent
PACKAGE_DIR = HERE.parent
ALLOWLIST = HERE / "import_allowlist.txt"


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # the module imported (fastconv modules resolved to one that exists)
    scope: str  # "module", "function" or "string"
    line: int
    origin: str  # "internal", "stdlib", "required" or "optional"


@dataclass
class Module:
    name: str
    path: Path
    lines: int
    imports: list[Import] = field(default_factory=list)


@dataclass(frozen=True)
class Violation:
    kind: str
    subject: str
    where: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.kind} | {self.subject}"


def module_name(package_dir: Path, path: Path) -> str:
    parts = [package_dir.name, *path.relative_to(package_dir).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _dependencies(pyproject: Path | None) -> set[str]:
    """Import names of ``[project] dependencies`` (distribution names, normalised)."""
    if pyproject is None or not pyproject.is_file():
        return set()
    text = pyproject.read_text()
    if tomllib is not None:
        specs = tomllib.loads(text).get("project", {}).get("dependencies", [])
    else:
        flags = re.MULTILINE | re.DOTALL
        section = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, flags)
        match = section and re.search(r"^dependencies\s*=\s*\[(.*?)\]\s*$", section.group(1),
                                      flags)
        specs = re.findall(r"\"([^\"]+)\"", match.group(1)) if match else []
    return {re.split(r"[\s\[<>=!~;]", spec, maxsplit=1)[0].lower().replace("-", "_")
            for spec in specs}


class _Scanner(ast.NodeVisitor):
    def __init__(self, module: Module, is_package: bool, known: set[str], top: str,
                 required: set[str]):
        self.module, self.known, self.top, self.required = module, known, top, required
        self.base = module.name if is_package else module.name.rpartition(".")[0]
        self.depth = 0
        self.dynamic = False
        self.literals: set[str] = set()

    def _origin(self, name: str) -> str:
        root = name.partition(".")[0]
        if root == self.top:
            return "internal"
        if root in sys.stdlib_module_names:
            return "stdlib"
        if any(name == ns or name.startswith(ns + ".") for ns in OPTIONAL_NAMESPACES):
            return "optional"
        return "required" if root in self.required | IMPLIED_REQUIRED else "optional"

    def _add(self, target: str, line: int, scope: str | None = None) -> None:
        if target.partition(".")[0] == self.top:
            while target not in self.known and "." in target:
                target = target.rpartition(".")[0]
            if target == self.module.name:
                return
        scope = scope or ("function" if self.depth else "module")
        imp = Import(self.module.name, target, scope, line, self._origin(target))
        if imp not in self.module.imports:
            self.module.imports.append(imp)

    def visit_FunctionDef(self, node) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_Lambda = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", None)
        if name == "TYPE_CHECKING":
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            parts = self.base.split(".")
            base = ".".join(parts[:len(parts) - node.level + 1])
            source = f"{base}.{node.module}" if node.module else base
        else:
            source = node.module or ""
        for alias in node.names:
            candidate = f"{source}.{alias.name}"
            if candidate in self.known or any(
                    candidate == ns or candidate.startswith(ns + ".")
                    for ns in OPTIONAL_NAMESPACES):
                self._add(candidate, node.lineno)
            else:
                self._add(source, node.lineno)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name in ("import_module", "__import__") and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                if arg.value.partition(".")[0] == self.top:
                    self._add(arg.value, node.lineno, "string")
            else:
                self.dynamic = True
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and node.value in self.known:
            self.literals.add(node.value)


def scan(package_dir: Path, pyproject: Path | None = None) -> dict[str, Module]:
    """Every module under ``package_dir`` with its imports."""
    package_dir = Path(package_dir)
    required = _dependencies(pyproject)
    paths = sorted(p for p in package_dir.rglob("*.py") if "__pycache__" not in p.parts)
    modules = {}
    for path in paths:
        name = module_name(package_dir, path)
        modules[name] = Module(name, path, len(path.read_text().splitlines()))
    known = set(modules)
    for name, module in modules.items():
        scanner = _Scanner(module, module.path.name == "__init__.py", known, package_dir.name,
                           required)
        scanner.visit(ast.parse(module.path.read_text(), str(module.path)))
        if scanner.dynamic:
            for literal in sorted(scanner.literals - {name}):
                module.imports.append(Import(name, literal, "string", 0, "internal"))
    return modules


def tier_of(name: str, top: str, tiers: dict[str, str] = TIERS) -> str | None:
    relative = name[len(top) + 1:] if name != top else ""
    best = None
    for prefix, tier in tiers.items():
        if relative == prefix or (prefix and relative.startswith(prefix + ".")):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, tier)
    return best[1] if best else None


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """The components of more than one module (Tarjan, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return sorted(found)


def _graph(modules: dict[str, Module], scopes: set[str]) -> dict[str, set[str]]:
    graph = {name: set() for name in modules}
    for module in modules.values():
        for imp in module.imports:
            if imp.origin == "internal" and imp.scope in scopes and imp.target in modules:
                graph[module.name].add(imp.target)
    return graph


def analyse(modules: dict[str, Module], top: str, tiers: dict[str, str] = TIERS,
            order: tuple[str, ...] = TIER_ORDER) -> list[Violation]:
    rank = {tier: len(order) - i for i, tier in enumerate(order)}
    found: dict[str, list[str]] = defaultdict(list)
    kinds: dict[str, tuple[str, str]] = {}

    def add(kind: str, subject: str, where: str) -> None:
        key = f"{kind} | {subject}"
        kinds[key] = (kind, subject)
        found[key].append(where)

    for name, module in modules.items():
        if tier_of(name, top, tiers) is None:
            add("untiered", name, str(module.path))
    for scopes, kind in (({"module"}, "cycle"), ({"module", "function", "string"},
                                                  "runtime-cycle")):
        for component in strongly_connected(_graph(modules, scopes)):
            add(kind, ", ".join(component), f"{len(component)} modules")
    for module in modules.values():
        for imp in module.imports:
            at = f"{module.path.name}:{imp.line}" if imp.line else f"{module.path.name} (string)"
            if imp.scope == "function" and imp.origin != "optional":
                add("function-import", f"{imp.importer} -> {imp.target}", at)
            if imp.scope == "string":
                add("string-import", f"{imp.importer} -> {imp.target}", at)
            if imp.origin == "internal":
                mine, theirs = tier_of(imp.importer, top, tiers), tier_of(imp.target, top, tiers)
                if mine and theirs and rank[theirs] > rank[mine]:
                    add("upward", f"{imp.importer} ({mine}) -> {imp.target} ({theirs}) "
                                  f"[{imp.scope}]", at)
    return [Violation(*kinds[key], tuple(where)) for key, where in sorted(
        found.items(), key=lambda item: (KINDS.index(kinds[item[0]][0]), item[0]))]


def read_allowlist(path: Path | None) -> dict[str, str]:
    """``kind | subject | reason`` lines -> {``kind | subject``: reason}."""
    entries = {}
    if path is None or not Path(path).is_file():
        return entries
    for number, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = [part.strip() for part in line.split(" | ")]
        if len(parts) != 3 or not parts[2]:
            raise ValueError(f"{path}:{number}: expected 'kind | subject | reason': {raw!r}")
        entries[f"{parts[0]} | {parts[1]}"] = parts[2]
    return entries


@dataclass
class Result:
    modules: dict[str, Module]
    violations: list[Violation]
    new: list[Violation]
    stale: list[str]
    allowlist: dict[str, str]

    @property
    def ok(self) -> bool:
        return not self.new and not self.stale


def check(package_dir: Path = PACKAGE_DIR, pyproject: Path | None = None,
          allowlist: Path | None = ALLOWLIST, tiers: dict[str, str] = TIERS,
          order: tuple[str, ...] = TIER_ORDER) -> Result:
    package_dir = Path(package_dir)
    if pyproject is None:
        pyproject = package_dir.parent / "pyproject.toml"
    modules = scan(package_dir, pyproject)
    violations = analyse(modules, package_dir.name, tiers, order)
    allowed = read_allowlist(allowlist)
    keys = {v.key for v in violations}
    return Result(modules, violations, [v for v in violations if v.key not in allowed],
                  sorted(set(allowed) - keys), allowed)


def inventory(result: Result, package_dir: Path, tiers: dict[str, str] = TIERS,
              order: tuple[str, ...] = TIER_ORDER) -> list[str]:
    """Modules and lines per tier, then the tree of the package with lines and tiers."""
    top = package_dir.name
    lines = ["modules and lines per tier (highest first):"]
    for tier in order:
        members = [m for n, m in result.modules.items() if tier_of(n, top, tiers) == tier]
        lines.append(f"  {tier:<9} {len(members):>4} modules {sum(m.lines for m in members):>7}"
                     " lines")
    lines.append(f"  {'total':<9} {len(result.modules):>4} modules "
                 f"{sum(m.lines for m in result.modules.values()):>7} lines")
    lines.append("")
    lines.append("tree (lines, tier):")
    folders: set[tuple[str, ...]] = set()
    for name, module in sorted(result.modules.items(), key=lambda i: i[1].path):
        parts = module.path.relative_to(package_dir.parent).parts
        for depth in range(1, len(parts)):
            folder = parts[:depth]
            if folder not in folders:
                folders.add(folder)
                total = sum(m.lines for m in result.modules.values()
                            if m.path.relative_to(package_dir.parent).parts[:depth] == folder)
                lines.append(f"{'  ' * (depth - 1)}{folder[-1]}/ {total}")
        lines.append(f"{'  ' * (len(parts) - 1)}{parts[-1]} {module.lines}"
                     f"  [{tier_of(name, top, tiers) or '?'}]")
    return lines


def report(result: Result) -> list[str]:
    lines = []
    counts = defaultdict(int)
    for v in result.violations:
        counts[v.kind] += 1
    function_statements = len({(i.importer, i.line) for m in result.modules.values()
                               for i in m.imports
                               if i.scope == "function" and i.origin == "internal"})
    lines.append(f"{len(result.modules)} modules; violations by kind: "
                 + ", ".join(f"{k} {counts[k]}" for k in KINDS)
                 + f"; function-level fastconv import statements: {function_statements}")
    for kind in ("cycle", "runtime-cycle"):
        for v in result.violations:
            if v.kind == kind:
                lines.append(f"{kind} ({v.where[0]}): {v.subject}")
    if result.new:
        lines.append("")
        lines.append(f"{len(result.new)} violation(s) not in the allowlist:")
        for v in result.new:
            lines.append(f"  {v.key}    at {', '.join(v.where)}")
    if result.stale:
        lines.append("")
        lines.append(f"{len(result.stale)} allowlist entr(y/ies) no longer occurring "
                     "(delete them):")
        lines.extend(f"  {key}" for key in result.stale)
    lines.append("")
    lines.append("import check " + ("passed" if result.ok else "FAILED")
                 + f" ({len(result.violations) - len(result.new)} allowlisted)")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastconv.tools.check_imports",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", type=Path, default=PACKAGE_DIR)
    parser.add_argument("--allowlist", type=Path, default=ALLOWLIST)
    parser.add_argument("--inventory", action="store_true",
                        help="also list modules and lines per tier and the package tree")
    parser.add_argument("--all", action="store_true", help="list every violation")
    parser.add_argument("--write-allowlist", action="store_true",
                        help="print an allowlist of the current violations (reasons kept)")
    args = parser.parse_args(argv)
    result = check(args.package, allowlist=args.allowlist)
    out = []
    if args.write_allowlist:
        for v in result.violations:
            out.append(f"{v.key} | {result.allowlist.get(v.key, 'TODO')}")
        sys.stdout.write("\n".join(out) + "\n")
        return 0
    if args.inventory:
        out += inventory(result, args.package) + [""]
    if args.all:
        out += [f"{v.key}    at {', '.join(v.where)}" for v in result.violations] + [""]
    out += report(result)
    sys.stdout.write("\n".join(out) + "\n")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
