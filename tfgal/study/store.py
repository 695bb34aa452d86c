"""The stage store: one finished stage = ``<name>.json`` (written last) + ``<name>.npz``.

A stage's record carries a key, the digest of its settings and of the ids of the stages it
reads, so a stage reruns exactly when its record is missing, its settings changed or a
stage it reads was redone. The JSON is written atomically after the arrays, so a crash
never pairs an old record with new arrays (`tfgal.io`).

A stage output is a dataclass: fields made with `array_field` go to the ``.npz`` (a
field may hold an array or a nested dict of arrays, stored under ``field/key/...``), the
others, made JSON-safe by `plain`, to the record's ``result``.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import time
import uuid

import numpy as np

from tfgal import io

__all__ = ["plain", "digest", "now", "model_fingerprint", "array_field", "StageRecord",
           "StageStore"]

SEP = "/"  # npz key of a nested array: field/key/key


def plain(obj):
    """A JSON-safe copy: NumPy scalars to Python, NaN and infinities to None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return plain(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return plain(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


def digest(obj):
    return hashlib.sha256(json.dumps(plain(obj), sort_keys=True).encode()).hexdigest()[:16]


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def model_fingerprint(path):
    """Digest of a SavedModel's graph and variables: what downstream stages depend on
    (`tfgal.model.export.fingerprint`, which keys a run's saved predictions too)."""
    from tfgal.model import export  # TensorFlow only when a model is fingerprinted
    return export.fingerprint(path)


# --------------------------------------------------------------------------- outputs


def array_field(**kwargs):
    """A stage-output field stored in the stage's ``.npz``: an array or a dict of them."""
    if "default" not in kwargs:
        kwargs.setdefault("default_factory", dict)
    return dataclasses.field(metadata={"array": True}, **kwargs)


def _is_array(field):
    return field.metadata.get("array", False)


def _flatten(prefix, value, out):
    if value is None:  # an absent array (e.g. a skipped stage's) is not stored
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}{SEP}{key}", item, out)
    else:
        out[prefix] = np.asarray(value)


def _unflatten(arrays):
    out = {}
    for key, value in arrays.items():
        *parents, last = key.split(SEP)
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def encode(output):
    """(JSON-safe result dict, flat arrays dict or None) of a stage output."""
    result, arrays = {}, {}
    for field in dataclasses.fields(output):
        value = getattr(output, field.name)
        if _is_array(field):
            _flatten(field.name, value, arrays)
        else:
            result[field.name] = plain(value)
    has_arrays = any(_is_array(f) for f in dataclasses.fields(output))
    return result, (arrays if has_arrays else None)


def decode(cls, result, arrays):
    """The `cls` output of a stored result and its (flat) arrays.

    Every field must be stored (KeyError otherwise), so a record written by other code,
    e.g. an older tfgal, reads as missing and its stage reruns. An empty dict of arrays
    stores no array, so a dict field found nowhere reads back empty; a None array is not
    stored either and reads back as None where that is the field's default.
    """
    nested = _unflatten(arrays or {})

    def value(field):
        if not _is_array(field):
            return result[field.name]
        if field.name not in nested and field.default_factory is dict:
            return {}
        if field.name not in nested and field.default is None:
            return None
        return nested[field.name]

    return cls(**{f.name: value(f) for f in dataclasses.fields(cls)})


# --------------------------------------------------------------------------- the store


@dataclasses.dataclass
class StageRecord:
    """A finished stage: its typed output, id (what dependants' keys digest) and timing."""

    name: str
    key: str
    id: str
    output: object
    seconds: float
    reused: bool


class StageStore:
    """Stage records under ``root``: ``<name>.json`` (written last) and ``<name>.npz``."""

    def __init__(self, root, log=print):
        self.root, self.log = root, log

    def path(self, name, ext="json"):
        return os.path.join(self.root, f"{name}.{ext}")

    def load(self, name):
        try:
            with open(self.path(name)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def forget(self, name):
        for ext in ("json", "npz"):
            if os.path.exists(self.path(name, ext)):
                os.remove(self.path(name, ext))

    def _reload(self, saved, cls):
        """The stored output, or None when its files no longer fit `cls`."""
        arrays = None
        try:
            if saved.get("npz"):
                with np.load(self.path(saved["stage"], "npz")) as f:
                    arrays = {k: f[k] for k in f.files}
            return decode(cls, saved["result"], arrays)
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def run(self, name, cls, settings, fn, *, deps=(), outputs=(), valid=None, record_id=None):
        """Runs `fn() -> cls instance` unless a record with the same key exists, its
        outputs exist and `valid(saved)` holds; `record_id(output)` names the result."""
        key = digest({"settings": settings, "deps": {d.name: d.id for d in deps}})
        saved = self.load(name)
        if saved and saved["key"] == key and all(map(os.path.exists, outputs)) and (
                valid is None or valid(saved)):
            output = self._reload(saved, cls)
            if output is not None:
                self.log(f"{name}: done before ({saved['seconds']:.1f} s), reused")
                return StageRecord(name, key, saved["id"], output, saved["seconds"], True)
        self.log(f"{name}: running")
        os.makedirs(self.root, exist_ok=True)
        self.forget(name)  # stale: a crash below must not pair the old record with new arrays
        started = time.time()
        output = fn()
        result, arrays = encode(output)
        if arrays is not None:
            io.write_npz(self.path(name, "npz"), arrays)
        saved = {"stage": name, "key": key,
                 "id": (record_id(output) if record_id else None) or uuid.uuid4().hex[:16],
                 "seconds": round(time.time() - started, 2), "npz": arrays is not None,
                 "finished": now(), "settings": plain(settings), "result": result}
        io.write_json(self.path(name), saved)
        self.log(f"{name}: done in {saved['seconds']:.1f} s")
        # Dependants see what a resumed run would load: the JSON-safe result.
        return StageRecord(name, key, saved["id"], decode(cls, result, arrays),
                           saved["seconds"], False)
