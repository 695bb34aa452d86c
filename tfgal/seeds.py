"""Named sub-seeds: one root seed from the config, split by purpose.

``derive(seed, "data", "shuffle")`` gives the same int for the same names on every
machine and Python (no ``hash()``, which is salted per process).
"""

import hashlib

__all__ = ["derive", "MAX_SEED"]

MAX_SEED = 2**31 - 1


def derive(seed, *names):
    """A 31-bit seed derived from `seed` and a path of names (str or int)."""
    text = "/".join([str(int(seed))] + [str(n) for n in names])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") % MAX_SEED
