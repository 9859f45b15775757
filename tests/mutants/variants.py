"""Building variants of a reference solution cell's source, shared by the mutant tests."""

from __future__ import annotations

import ast


def edit(source: str, *pairs: tuple[str, str]) -> str:
    """str.replace each (old, new) on the reference source; each old text must occur exactly once."""
    for old, new in pairs:
        assert source.count(old) == 1, f"reference source changed: {old!r} occurs {source.count(old)} times"
        source = source.replace(old, new)
    return source


def swap_functions(source: str, new_code: str) -> str:
    """Replace the top-level functions of ``source`` that ``new_code`` redefines by its versions."""
    lines = source.splitlines(keepends=True)
    new = {f.name: f for f in ast.parse(new_code).body if isinstance(f, ast.FunctionDef)}
    new_lines = new_code.splitlines(keepends=True)
    old = {f.name: f for f in ast.parse(source).body if isinstance(f, ast.FunctionDef)}
    assert set(new) <= set(old), f"reference cell has no {set(new) - set(old)}"
    for name in sorted(new, key=lambda n: -old[n].lineno):  # bottom-up keeps line numbers valid
        f, g = old[name], new[name]
        lines[f.lineno - 1:f.end_lineno] = new_lines[g.lineno - 1:g.end_lineno]
    out = "".join(lines)
    return out if out.endswith("\n") else out + "\n"
