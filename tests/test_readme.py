"""The README's Python API and layout name things that exist."""

import importlib
import importlib.util
import pathlib
import re

import pytest

README = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
ROOT = pathlib.Path(__file__).parents[1] / "tfgal"


def _imports():
    found = re.findall(r"from (tfgal[\w.]*) import ([\w, ]+)", README)
    return sorted({(module, name.strip()) for module, names in found
                   for name in names.split(",") if name.strip()})


def test_readme_names_imports():
    assert len(_imports()) >= 20


@pytest.mark.parametrize("module, name", _imports())
def test_every_import_in_the_readme_resolves(module, name):
    found = hasattr(importlib.import_module(module), name)
    if not found:  # a submodule: "from tfgal import config"
        found = importlib.util.find_spec(f"{module}.{name}") is not None
    assert found, f"README: from {module} import {name}"


def test_layout_lists_every_module():
    layout = README[README.index("## Layout"):]
    for path in sorted(ROOT.rglob("*.py")):
        if path.name == "__init__.py" and path.parent != ROOT:
            continue
        assert re.search(rf"\b{path.stem}\b", layout), f"README layout misses {path}"


def test_corruption_table_matches_the_registry():
    """Every severity value in the README's corruption table is the one the code uses."""
    from tfgal.data import corruptions
    section = README[README.index("## Physical corruptions"):]
    rows = [line for line in section.splitlines() if line.startswith("| ")][2:]
    table = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    table = [r for r in table if len(r) == 8]
    expected = corruptions.table_rows()
    assert len(table) == len(expected)
    for cells, (name, stage, _, values) in zip(table, expected):
        if cells[0]:
            assert cells[0] == f"`{name}`" and cells[1] == stage
        assert [float(v) for v in cells[3:]] == pytest.approx([float(v) for v in values])
