"""Shared fixtures: tiny datasets written with the real writer, no GalSim needed."""

import fcntl
import os
import struct
import subprocess
import termios

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from tfgal import survey
from tfgal.data import DatasetWriter, SPLITS
from tfgal.data import stretch


def blob_images(n, rng, size=16):
    """Gaussian blobs (e-/s per pixel), brighter in r and i, one per galaxy."""
    yy, xx = np.mgrid[:size, :size]
    out = np.empty((n, size, size, 3), np.float32)
    for k in range(n):
        cx, cy = rng.uniform(size * 0.3, size * 0.7, 2)
        width = rng.uniform(1.5, 3.0)
        profile = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * width**2))
        out[k] = profile[..., None] * np.array([2.0, 4.0, 5.0]) * rng.uniform(0.5, 2.0)
    return out


def write_blob_dataset(root, counts=(24, 8, 8), size=16, shard_size=8, compression="GZIP",
                       seed=0):
    rng = np.random.default_rng(seed)
    galaxy_id = 0
    train_sample = []
    with DatasetWriter(root, images={"flux": {"noise": False}}, image_shape=(size, size, 3),
                       shard_size=shard_size, compression=compression) as writer:
        for split, n in zip(SPLITS, counts):
            images = blob_images(n, rng, size)
            for image in images:
                writer.add(split, {"flux": image}, galaxy_id % 3, galaxy_id)
                if split == "train":
                    train_sample.append(image)
                galaxy_id += 1
        fitted = stretch.fit(np.stack(train_sample), noiseless=True, depth=survey.Y10, seed=seed)
        return writer.finish(stretch=fitted, generator={"name": "tests.blobs", "seed": seed})


@pytest.fixture(scope="session")
def blob_dataset(tmp_path_factory):
    """A 40-galaxy noiseless dataset of 16x16 blobs, 8 galaxies per shard."""
    return write_blob_dataset(tmp_path_factory.mktemp("data") / "blobs")


def run_in_terminal(argv, timeout=300):
    """Runs `argv` with stderr on a pseudo-terminal (100 columns) and stdout on a pipe;
    returns (status, stdout, what the terminal showed)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=slave)
    os.close(slave)
    shown = []
    while True:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:  # EIO: every writer of the terminal has gone
            break
        if not chunk:
            break
        shown.append(chunk)
    out = process.stdout.read()
    process.wait(timeout=timeout)
    os.close(master)
    return process.returncode, out.decode(), b"".join(shown).decode(errors="replace")
