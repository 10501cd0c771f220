"""The docs keep up with the code (datasette's ``tests/test_docs.py`` style).

- every hook in :mod:`bench_core.hookspecs` is documented in ``docs/plugin_authoring.md`` with its exact
  signature, and every hook heading there names a real hook;
- every abstract method of the four roles appears there with its exact signature;
- every registered plugin name is mentioned in ``docs/methods.md``.

Signatures are read from the source with :mod:`ast`, so the expected text is what the spec module declares
(``bdbench_register_attacks() -> list[type[Attack]]``), not a runtime rendering of string annotations.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pluggy
import pytest

from bench_core import hookspecs, interfaces
from bench_core.registry import default_registry

DOCS = Path(__file__).resolve().parent.parent / "docs"
GUIDE = DOCS / "plugin_authoring.md"
METHODS = DOCS / "methods.md"


def _hook_names() -> list[str]:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return sorted(name for name in vars(pm.hook) if not name.startswith("_"))


def _signature(fn: ast.FunctionDef) -> str:
    """``name(args) -> returns`` as written in the source (ast-normalised spacing)."""
    text = f"{fn.name}({ast.unparse(fn.args)})"
    return text + (f" -> {ast.unparse(fn.returns)}" if fn.returns is not None else "")


def _squeeze(text: str) -> str:
    """Whitespace-free text: ``train: bool = False`` and ast's ``train: bool=False`` compare equal."""
    return re.sub(r"\s+", "", text)


def _functions(module) -> dict[str, ast.FunctionDef]:
    return {node.name: node for node in ast.parse(inspect.getsource(module)).body
            if isinstance(node, ast.FunctionDef)}


@pytest.fixture(scope="module")
def guide() -> str:
    return GUIDE.read_text()


def test_hookspec_module_is_what_pluggy_sees():
    """The ast view and pluggy agree on the set of hooks (nothing is missed by reading the source)."""
    marked = sorted(name for name, fn in _functions(hookspecs).items()
                    if any(ast.unparse(d) == "hookspec" for d in fn.decorator_list))
    assert marked == _hook_names()
    assert marked, "no hooks found"


@pytest.mark.parametrize("hook", _hook_names())
def test_hook_is_documented_with_its_signature(hook, guide):
    signature = _signature(_functions(hookspecs)[hook])
    headings = [_squeeze(line.lstrip("#").strip("` \n")) for line in guide.splitlines() if line.startswith("### ")]
    assert _squeeze(signature) in headings, f"docs/plugin_authoring.md needs a heading '### `{signature}`'"


def test_every_documented_hook_exists(guide):
    documented = set(re.findall(r"^### `(bdbench_\w+)\(", guide, flags=re.M))
    assert documented, "no hook headings found in docs/plugin_authoring.md"
    assert documented <= set(_hook_names()), f"documented but not in hookspecs: {documented - set(_hook_names())}"


def _role_methods() -> list[tuple[str, str]]:
    tree = ast.parse(inspect.getsource(interfaces))
    roles = {"Attack", "TrainDefense", "PostTrainDefense", "InferenceDefense", "Detector", "Probe"}
    out = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name in roles:
            for fn in node.body:
                if isinstance(fn, ast.FunctionDef) and not fn.name.startswith("_"):
                    out.append((node.name, fn.name))
    return out


@pytest.mark.parametrize("role,method", _role_methods())
def test_role_method_is_documented_with_its_signature(role, method, guide):
    cls = next(n for n in ast.parse(inspect.getsource(interfaces)).body
               if isinstance(n, ast.ClassDef) and n.name == role)
    fn = next(f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == method)
    if any(ast.unparse(d) == "property" for d in fn.decorator_list):
        assert method in guide
        return
    signature = _signature(fn)
    assert _squeeze(f"def {signature}") in _squeeze(guide), \
        f"docs/plugin_authoring.md should show `def {signature}` for {role}"


def test_every_registered_plugin_is_in_methods_md():
    text = METHODS.read_text()
    registry = default_registry()
    missing = [f"{kind} {name}" for kind in ("attack", "defense", "detector", "probe")
               for name in registry.of(kind).names() if f"`{name}`" not in text]
    assert not missing, f"docs/methods.md does not mention: {', '.join(missing)}"
