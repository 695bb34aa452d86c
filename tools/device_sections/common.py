"""What the device check's sections share: the seed, the tree's root, skipping, table rows."""

from __future__ import annotations

import os

__all__ = ["SEED", "ROOT", "Skip", "row"]

SEED = 0
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Skip(Exception):
    """The section does not apply here; the message says why."""


def row(entry, figure, value, settings=""):
    """A line of the section's table: what was measured, its value, under which settings."""
    entry["table"].append([figure, value, settings])
