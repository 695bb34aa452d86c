"""The package's shape: four wings in flow order, small modules, no import against the flow.

data -> model -> attack -> study. A wing imports the leaves at the top and earlier wings
only; a leaf imports no wing (the command-line entry points excepted: they call every wing).
Inside the data wing, its map (`tfgal/data/__init__.py`): core modules and rooms in tiers,
each importing within its unit and from lower tiers. No import circle anywhere. Read from
the source with `ast`, so a late import inside a function counts too.
"""

import ast
import pathlib

import pytest

import tfgal

ROOT = pathlib.Path(tfgal.__file__).parent
WINGS = ("data", "model", "attack", "study")
LEAVES = ("errors", "seeds", "survey", "config", "io", "locks", "progress", "console", "beam")
ENTRY_POINTS = ("cli",)
# The data wing's map, as tfgal/data/__init__.py draws it: unit -> (tier, its top-level
# modules, or None for a room: a subpackage of that name).
DATA_UNITS = {
    "core": (0, ("manifest", "codec", "writer", "shards", "stretch", "pools", "display")),
    "mock": (1, None), "importers": (1, None), "corruptions": (1, None),
    "pipeline": (2, ("noise", "observation", "pipeline")),
    "gallery": (3, ("gallery",)), "morphology": (3, None),
    "tfds_builders": (3, ("tfds_builders",)),
}
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


def _data_unit(module):
    """The data wing's unit of a dotted module name under tfgal.data (None: the wing's map)."""
    parts = module.split(".")
    if len(parts) == 2:
        return None
    for unit, (_, top) in DATA_UNITS.items():
        if (top is None and parts[2] == unit) or (top is not None and parts[2] in top):
            return unit
    raise AssertionError(f"{module}: in no unit of the data wing's map (DATA_UNITS)")


def data_violations(me, imported):
    """Imports of data-wing module `me` that go sideways or up the data wing's tiers."""
    unit = _data_unit(me)
    out = []
    for other in sorted(m for m in imported if m.startswith("tfgal.data")):
        other_unit = _data_unit(other)
        if unit is None or other_unit == unit:
            continue
        if other_unit is None:
            out.append(f"{me} imports the data wing's map (tfgal.data); import the module")
        elif DATA_UNITS[other_unit][0] >= DATA_UNITS[unit][0]:
            out.append(f"{me} ({unit}, tier {DATA_UNITS[unit][0]}) imports {other} "
                       f"({other_unit}, tier {DATA_UNITS[other_unit][0]}): a unit imports "
                       "within itself and from lower tiers only")
    return out


def test_the_data_wing_is_its_map():
    data = ROOT / "data"
    rooms = {p.name for p in data.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert rooms == {u for u, (_, top) in DATA_UNITS.items() if top is None}
    tops = {p.stem for p in data.glob("*.py")} - {"__init__"}
    assert tops == {m for _, top in DATA_UNITS.values() if top for m in top}
    text = (data / "__init__.py").read_text()
    for unit, (tier, top) in DATA_UNITS.items():  # the docstring's map names every module
        assert f"tier {tier}" in text
        for name in top or (f"{unit}/",):
            assert f"\n      {name} " in text, f"{name} missing from tfgal/data/__init__.py"
    for room in rooms:
        assert (data / room / "__init__.py").exists()
        doc = ast.get_docstring(ast.parse((data / room / "__init__.py").read_text()))
        for module in (data / room).glob("*.py"):  # every room's docstring names its modules
            if module.stem != "__init__":
                assert f"    {module.stem} " in doc, f"{room}/__init__.py omits {module.stem}"


@pytest.mark.parametrize("path", [p for p in _modules() if "data" in p.relative_to(ROOT).parts],
                         ids=lambda p: _name(p))
def test_data_wing_imports_follow_its_tiers(path):
    assert data_violations(_name(path), _imports(path)) == []


def test_the_data_checker_sees_sideways_and_upward_imports():
    assert data_violations("tfgal.data.mock.builder", {
        "tfgal.data.shards", "tfgal.data.mock.files", "tfgal.data.importers.npy",
        "tfgal.data.pipeline", "tfgal.data"}) == [
        "tfgal.data.mock.builder imports the data wing's map (tfgal.data); import the module",
        "tfgal.data.mock.builder (mock, tier 1) imports tfgal.data.importers.npy (importers, "
        "tier 1): a unit imports within itself and from lower tiers only",
        "tfgal.data.mock.builder (mock, tier 1) imports tfgal.data.pipeline (pipeline, tier 2): "
        "a unit imports within itself and from lower tiers only"]
    assert data_violations("tfgal.data.gallery", {"tfgal.data.pipeline",
                                                  "tfgal.data.corruptions"}) == []
    with pytest.raises(AssertionError, match="in no unit"):
        _data_unit("tfgal.data.somewhere")


def _exported_modules(path, me):
    """Modules a lazy package's `_EXPORTS` maps names to (PEP 562: imported on use)."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_EXPORTS"
                                                for t in node.targets):
            scope = {}
            exec(compile(ast.Module([node], []), str(path), "exec"), scope)  # plain data
            return {f"{me}.{t[0] if isinstance(t, tuple) else t}"
                    for t in scope["_EXPORTS"].values()}
    return set()


def import_graph():
    """tfgal module -> the tfgal modules it imports, late imports and lazy exports too."""
    graph = {}
    for path in _modules():
        me = _name(path)
        graph[me] = _imports(path, me) - {me}
        if path.name == "__init__.py":
            graph[me] |= _exported_modules(path, me)
    return graph


def circles(graph):
    """The import circles of `graph`: its strongly connected parts of two or more modules."""
    order, low, stack, found = {}, {}, [], []

    def visit(v):  # Tarjan's algorithm
        order[v] = low[v] = len(order)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in order:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], order[w])
        if low[v] == order[v]:
            part = []
            while not part or part[-1] != v:
                part.append(stack.pop())
            if len(part) > 1:
                found.append(sorted(part))

    for v in sorted(graph):
        if v not in order:
            visit(v)
    return found


def test_no_import_circle():
    graph = import_graph()
    assert "tfgal.data.mock.files" in graph["tfgal.data.mock.beam"]
    assert "tfgal.data.mock.beam" in graph["tfgal.data.mock.builder"]  # late, counted
    assert "tfgal.data.mock.builder" in graph["tfgal.data.mock"]  # via its _EXPORTS
    assert circles(graph) == []


def test_the_circle_finder_sees_circles():
    # The circle this map removed: mock_build imported beam_mock, which imported it back.
    graph = {"a.mock_build": {"a.beam_mock", "a.params"}, "a.beam_mock": {"a.mock_build"},
             "a.params": set(), "x": {"y"}, "y": {"z"}, "z": {"x"}}
    assert sorted(circles(graph)) == [["a.beam_mock", "a.mock_build"], ["x", "y", "z"]]


LAZY_PACKAGES = ("tfgal.data", "tfgal.data.mock", "tfgal.data.importers",
                 "tfgal.data.corruptions", "tfgal.data.morphology", "tfgal.model", "tfgal.attack")


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_lazy_exports_resolve_and_shadow_no_module(package):
    import importlib
    module = importlib.import_module(package)
    here = ROOT.parent / package.replace(".", "/")
    submodules = {p.stem for p in here.glob("*.py")} | {p.name for p in here.iterdir()
                                                        if (p / "__init__.py").exists()}
    assert sorted(module.__all__) == sorted(module._EXPORTS)
    for name, target in module._EXPORTS.items():
        # A name equal to a submodule's would be replaced by that module once it is imported.
        assert name not in submodules, f"{package}.{name} is also a submodule"
        where, attr = target if isinstance(target, tuple) else (target, name)
        expected = getattr(importlib.import_module(f"{package}.{where}"), attr)
        assert getattr(module, name) is expected, f"{package}.{name}"
