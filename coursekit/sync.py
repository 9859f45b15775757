"""The instructor notebook's solution regions must not drift from the `solutions` package.

Every function or class defined in a solution cell must be defined identically (same AST,
docstrings ignored) in the problem set's module of `solutions`.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import textwrap

from . import notebook


def _strip_docstrings(node: ast.AST) -> ast.AST:
    for n in ast.walk(node):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)) and n.body:
            first = n.body[0]
            if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) \
                    and isinstance(first.value.value, str):
                n.body = n.body[1:] or [ast.Pass()]
    return node


def _normal(node: ast.AST) -> str:
    return ast.dump(_strip_docstrings(node), include_attributes=False)


def definitions(source: str) -> dict[str, ast.AST]:
    """Top-level function and class definitions of a piece of code, by name."""
    tree = ast.parse(source)
    return {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def check(nb, module_name: str) -> list[str]:
    """Differences between the notebook's solution cells and ``module_name``; empty when in sync."""
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 -- report any import failure
        return [f"cannot import {module_name}: {type(exc).__name__}: {exc}"]
    module_defs = definitions(inspect.getsource(module))
    problems = []
    for c in notebook.cells(nb):
        if c.kind != "solution":
            continue
        code = notebook.instructor_source(c.source)
        try:
            tree = ast.parse(code)
        except SyntaxError as exc:
            problems.append(f"{c.grade_id}: syntax error in solution cell: {exc}")
            continue
        defs = definitions(code)
        if not defs:
            problems.append(f"{c.grade_id}: solution cell defines no function or class")
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant):
                continue
            problems.append(f"{c.grade_id}: solution cells hold only imports and definitions "
                            f"(line {node.lineno}: {ast.unparse(node)[:60]!r})")
        for name, node in defs.items():
            if name not in module_defs:
                problems.append(f"{c.grade_id}: `{name}` is not defined in {module_name}")
            elif _normal(node) != _normal(module_defs[name]):
                nb_src = textwrap.indent(ast.unparse(_strip_docstrings(node)), "    ")
                mod_src = textwrap.indent(ast.unparse(_strip_docstrings(module_defs[name])), "    ")
                problems.append(f"{c.grade_id}: `{name}` differs from {module_name}.{name}\n"
                                f"  notebook:\n{nb_src}\n  module:\n{mod_src}")
    return problems
