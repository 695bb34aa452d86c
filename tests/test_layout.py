"""The package's shape: four wings in flow order, small modules, no import against the flow.

data -> model -> attack -> study. A wing imports the leaves at the top and earlier wings
only; a leaf imports no wing (the command-line entry points excepted: they call every wing).
Read from the source with `ast`, so a late import inside a function counts too.
"""

import ast
import pathlib

import pytest

import tfgal

ROOT = pathlib.Path(tfgal.__file__).parent
WINGS = ("data", "model", "attack", "study")
LEAVES = ("errors", "seeds", "survey", "config", "io", "locks", "progress", "console", "beam")
ENTRY_POINTS = ("cli",)
MAX_MODULE_LINES = 500
MAX_CLASS_LINES = 200


def _modules():
    return sorted(p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts)


def _name(path):
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _place(module):
    """("wing", rank) / ("leaf", -1) / ("entry", None) of a dotted tfgal module name."""
    parts = module.split(".")
    if len(parts) == 1:
        return "package", None
    if parts[1] in WINGS:
        return "wing", WINGS.index(parts[1])
    if parts[1] in LEAVES:
        return "leaf", -1
    if parts[1] in ENTRY_POINTS:
        return "entry", None
    raise AssertionError(f"{module}: not in a wing, a leaf or an entry point")


def _imports(path, me=None):
    """Dotted tfgal modules imported by the file at `path` (module `me`), late imports too."""
    me = me or _name(path)
    package = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "tfgal"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != "tfgal":
                continue
            for alias in node.names:  # "from tfgal import data" imports the wing itself
                sub = f"{base}.{alias.name}"
                is_module = (ROOT.parent / sub.replace(".", "/")).is_dir() or \
                    (ROOT.parent / (sub.replace(".", "/") + ".py")).exists()
                found.add(sub if is_module else base)
    return found


def violations(me, imported):
    """Imports of module `me` that go against the flow, as messages."""
    kind, rank = _place(me)
    out = []
    for other in sorted(imported):
        other_kind, other_rank = _place(other)
        if kind == "entry" or other == me:
            continue
        if other_kind == "entry":
            out.append(f"{me} imports the command line ({other})")
        elif kind in ("leaf", "package") and other_kind not in ("leaf", "package"):
            out.append(f"leaf {me} imports wing module {other}: leaves sit below every wing")
        elif kind == "wing" and other_kind == "wing" and other_rank > rank:
            out.append(f"{me} ({WINGS[rank]} wing) imports {other} ({WINGS[other_rank]} "
                       f"wing), against the flow {' -> '.join(WINGS)}")
    return out


def test_every_module_sits_in_a_wing_a_leaf_or_an_entry_point():
    top = {p.stem for p in ROOT.glob("*.py")} - {"__init__"}
    assert top == set(LEAVES), "unexpected top-level modules"
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert packages == set(WINGS) | set(ENTRY_POINTS)
    for path in _modules():
        _place(_name(path))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: _name(p))
def test_no_import_against_the_flow(path):
    assert violations(_name(path), _imports(path)) == []


def test_the_checker_sees_imports_against_the_flow(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import numpy\nfrom tfgal.study import runner\nfrom tfgal import attack\n"
                     "def late():\n    from tfgal.model import export\n")
    imported = _imports(probe, "tfgal.data.probe")
    assert imported == {"tfgal.study.runner", "tfgal.attack", "tfgal.model.export"}
    assert len(violations("tfgal.data.probe", imported)) == 3
    assert violations("tfgal.study.probe", imported) == []
    assert len(violations("tfgal.io", {"tfgal.data.pipeline"})) == 1
    assert violations("tfgal.cli", {"tfgal.study.runner"}) == []


@pytest.mark.parametrize("path", _modules(), ids=lambda p: _name(p))
def test_modules_and_classes_stay_small(path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES, \
        f"{_name(path)} has {len(text.splitlines())} lines (at most {MAX_MODULE_LINES})"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef):
            size = node.end_lineno - node.lineno + 1
            assert size <= MAX_CLASS_LINES, \
                f"class {_name(path)}.{node.name} has {size} lines (at most {MAX_CLASS_LINES})"


@pytest.mark.parametrize("path", [p for p in _modules() if p.name != "__init__.py"],
                         ids=lambda p: _name(p))
def test_modules_name_their_public_api(path):
    tree = ast.parse(path.read_text())
    names = {t.id for node in tree.body if isinstance(node, ast.Assign)
             for t in node.targets if isinstance(t, ast.Name)}
    assert "__all__" in names, f"{_name(path)} has no __all__"
