"""Writing files so that nothing is half-written: one atomic writer, a directory publisher,
file digests, and the one rule for existing outputs (`refuse_existing`).

Every file tfgal writes goes through `atomic_path`: the content is written to a temporary
file in the destination's directory (same filesystem, so the rename is atomic) and renamed
onto the destination only when complete. A crash leaves the old file or none, never a
truncated one. Directories (datasets, SavedModels) are built elsewhere and published whole
by `publish_directory`.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io as _io
import json
import os
import shutil
import tempfile
import uuid

from tfgal.errors import ConfigError, OutputExists

__all__ = ["atomic_path", "write_text", "write_json", "write_csv", "write_npz",
           "write_figure", "figure_format", "FIGURE_FORMATS", "publish_directory",
           "sha256_file", "update_sha256", "refuse_existing"]

BLOCK = 1 << 20
# Figure file extensions -> matplotlib's format (JPEG through Pillow).
FIGURE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".pdf": "pdf",
                  ".svg": "svg"}


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; renames it onto `path` if the block succeeds.

    The block writes the temporary file by any means (a library's own writer included). On
    an exception the temporary file is removed and `path` is left as it was.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".tmp-", dir=directory)
    os.close(fd)
    try:
        yield tmp
        # mkstemp makes the file owner-only; give it the mode a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path, text):
    """Writes `text` (UTF-8, newlines as given) to `path` atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def write_json(path, obj):
    """Writes `obj` as indented JSON (keys in their order) to `path` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_csv(path, rows):
    """Writes dict rows (columns from the first row) to `path` atomically."""
    buffer = _io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [])
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def write_npz(path, arrays):
    """Writes a dict of arrays as an uncompressed ``.npz`` to `path` atomically."""
    import numpy as np
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def figure_format(path, option="--out"):
    """The matplotlib format `path`'s extension names (`FIGURE_FORMATS`); else a
    `ConfigError` naming `option` (the flag a user typed `path` after) and the valid
    extensions."""
    shown = os.fspath(path)
    ext = os.path.splitext(shown)[1].lower()
    if ext not in FIGURE_FORMATS:
        what = (f": unknown image extension {ext!r} (the extension names the format)"
                if ext else " has no extension to name the image format")
        raise ConfigError(f"{option} {shown}{what}", key=option, valid=tuple(FIGURE_FORMATS))
    return FIGURE_FORMATS[ext]


def write_figure(path, fig, **savefig):
    """Writes a matplotlib figure to `path` atomically, in the format its extension names
    (`figure_format`: the temporary file's name ends otherwise); `savefig`: its keywords
    (``dpi``, ``bbox_inches``, ...). A figure that fails to draw leaves no file."""
    fmt = figure_format(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, **savefig)
    return path


def publish_directory(src, dst):
    """Renames a finished directory `src` onto `dst`, replacing any old one."""
    trash = None
    if os.path.exists(dst):
        trash = f"{dst}.old-{uuid.uuid4().hex[:8]}"
        os.replace(dst, trash)
    os.replace(src, dst)
    if trash:
        shutil.rmtree(trash, ignore_errors=True)


def update_sha256(digest, path):
    """Feeds the bytes of file `path` into a hashlib object `digest`; returns it."""
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            digest.update(block)
    return digest


def sha256_file(path):
    """Hex SHA-256 of a file's bytes."""
    return update_sha256(hashlib.sha256(), path).hexdigest()


def refuse_existing(path, overwrite, flag="--overwrite", *, names=None):
    """Raises `OutputExists` (one line naming `path` and `flag`) when `path` holds an
    output and `overwrite` is false; the output is left untouched.

    A file is an output; a directory is one when it is not empty or, with `names`, when
    it holds one of those entries (an empty or unrelated directory is then fine).
    """
    if overwrite:
        return
    shown = os.fspath(path)
    if os.path.isdir(shown):
        entries = os.listdir(shown)
        if names is None:
            if entries:
                raise OutputExists(f"{shown} exists and is not empty; rerun with {flag} "
                                   "to replace it", path=shown)
            return
        found = [n for n in names if n in entries]
        if found:
            listed = f"{', '.join(found[:-1])} and {found[-1]}" if found[:-1] else found[0]
            raise OutputExists(f"{shown} already holds {listed}; rerun with "
                               f"{flag} to replace {'them' if len(found) > 1 else 'it'}",
                               path=shown)
    elif os.path.lexists(shown):
        raise OutputExists(f"{shown} exists; rerun with {flag} to replace it", path=shown)
