"""The names a code cell reads from the kernel's global namespace (``ast``, first use first):
what "Explain cell" / ``--context vars`` describe. The sidebar's twin, for cells it reads
without a kernel, is labextension/src/pyscan.ts."""

from __future__ import annotations

import ast
import keyword
import re
from collections.abc import Callable, Iterable
from typing import Any

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Reads(ast.NodeVisitor):
    """Global names a cell reads, in order of first appearance; a function's parameters and
    local assignments, and comprehension variables, are not the kernel's."""

    def __init__(self) -> None:
        self.names: dict[str, None] = {}
        self.local: list[set[str]] = []

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load) and not any(node.id in s for s in self.local):
            self.names.setdefault(node.id, None)

    def _scope(self, node: ast.AST, bound: set[str], body: Iterable[ast.AST]) -> None:
        for sub in ast.walk(node):  # names assigned anywhere inside are local to it
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                bound.add(sub.id)
        self.local.append(bound)
        for child in body:
            self.visit(child)
        self.local.pop()

    def _function(self, node: Any) -> None:
        for d in getattr(node, "decorator_list", []):
            self.visit(d)
        a = node.args
        for default in [*a.defaults, *(d for d in a.kw_defaults if d is not None)]:
            self.visit(default)
        params = {x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs]}
        params |= {x.arg for x in (a.vararg, a.kwarg) if x is not None}
        body = node.body if isinstance(node.body, list) else [node.body]
        self._scope(node, params, body)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def _comprehension(self, node: Any) -> None:
        gens = node.generators
        self.visit(gens[0].iter)  # the outer iterable is read in the enclosing scope
        targets: set[str] = set()
        self.local.append(targets)
        for i, g in enumerate(gens):
            if i:
                self.visit(g.iter)
            targets |= {n.id for n in ast.walk(g.target) if isinstance(n, ast.Name)}
            for cond in g.ifs:
                self.visit(cond)
        for elt in ([node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]):
            self.visit(elt)
        self.local.pop()

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _comprehension


def names_used(code: str, transform: Callable[[str], str] | None = None) -> list[str]:
    """Names ``code`` reads from the global namespace, first use first. ``transform`` turns
    IPython syntax (magics, ``!cmd``) into Python first; code that still does not parse falls
    back to every identifier in it."""
    try:
        tree = ast.parse(transform(code) if transform else code)
    except (SyntaxError, ValueError):
        return list(dict.fromkeys(w for w in _IDENT.findall(code) if not keyword.iskeyword(w)))
    v = _Reads()
    v.visit(tree)
    return list(v.names)  # builtins included: the caller keeps those the user rebound
