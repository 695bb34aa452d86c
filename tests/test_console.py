"""Quiet, honest start-up: the commands' stderr carries tfgal's messages, Python's warnings
and tracebacks and child processes' output, but not TensorFlow's C++ start-up log."""

import json
import os
import subprocess
import sys
import textwrap
import warnings

import pytest

from tfgal import config, console
from tfgal.model import training

ABSL = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
CUDA = (b"I0000 00:00:1796000030.936973    2590 cudart_stub.cc:31] Could not find cuda drivers "
        b"on your machine, GPU will not be used.")
CUINIT = (b"E0000 00:00:1796000038.684726    2590 cuda_platform.cc:52] failed call to cuInit: "
          b"INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)")
LATER = b"W1130 01:02:03.456789   12 gpu_device.cc:2343] Cannot dlopen some GPU libraries."


@pytest.mark.parametrize("line, hidden", [
    (ABSL, True), (CUDA, True), (CUINIT, True), (LATER, True),
    (b"F1130 01:02:03.456789   12 x.cc:1] Check failed: fatal lines always pass", False),
    (b"error: dataset directory does not exist", False),
    (b"Epoch 1/3", False), (b"Ignored", False),
    (b"/x/keras/trainer.py:248: UserWarning: something", False),
])
def test_which_lines_are_hidden(line, hidden):
    assert console.is_tensorflow_log(line) == hidden


def test_filter_passes_everything_else_in_order(tmp_path):
    """A process that writes C++ log lines, Python messages, an unfinished progress line
    and a child's output to descriptor 2: only the log lines are dropped."""
    script = tmp_path / "probe.py"
    script.write_text(textwrap.dedent(f"""
        import os, subprocess, sys
        from tfgal import console
        console.hide_tensorflow_log()
        os.write(2, {ABSL!r} + b"\\n" + {CUDA!r} + b"\\n")
        print("tfgal: first", file=sys.stderr, flush=True)
        os.write(2, {CUINIT!r}[:20])
        os.write(2, {CUINIT!r}[20:] + b"\\n")
        sys.stderr.write("\\rpredict:  50%|#####     | 5/10")
        sys.stderr.flush()
        subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('child\\\\n')"])
        print("Ignored line from Python", file=sys.stderr)
        raise SystemExit("error: last words")
    """))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.decode() == ("tfgal: first\n\rpredict:  50%|#####     | 5/10child\n"
                                      "Ignored line from Python\nerror: last words\n")


def test_commands_start_quietly_and_verbose_keeps_the_log(blob_dataset):
    """`tfgal-data verify` loads TensorFlow: its stderr has no C++ log line; with
    --verbose TensorFlow's own log is untouched (what it holds depends on the build)."""
    binary = os.path.join(os.path.dirname(sys.executable), "tfgal-data")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    quiet = subprocess.run([binary, "verify", blob_dataset.root], capture_output=True,
                           timeout=300, env=env)
    assert quiet.returncode == 0, quiet.stderr.decode()[-2000:]
    assert not [line for line in quiet.stderr.splitlines() if console.is_tensorflow_log(line)]
    assert b"ok: " in quiet.stderr and b"40 records (train 24, val 8, test 8)" in quiet.stderr
    assert json.loads(quiet.stdout)["splits"]["train"]["count"] == 24  # stdout: JSON only
    verbose = subprocess.run([binary, "verify", blob_dataset.root, "--verbose"],
                             capture_output=True, timeout=300, env=env)
    assert verbose.returncode == 0
    logged = [line for line in verbose.stderr.splitlines() if console.is_tensorflow_log(line)]
    import tensorflow as tf
    if tf.test.is_built_with_cuda() and not tf.config.list_physical_devices("GPU"):
        # A CUDA build without a GPU logs the missing drivers: --verbose shows it.
        assert any(b"cuda" in line.lower() for line in logged), verbose.stderr[-2000:]


def test_device_line_names_what_tensorflow_runs_on():
    import tensorflow as tf
    line = console.device_line()
    assert line.startswith(f"tfgal: TensorFlow {tf.__version__} on ")
    if tf.config.list_physical_devices("GPU"):
        assert " GPU (" in line
    else:
        assert "on CPU" in line and "no GPU visible" in line and "--verbose" in line


def test_no_warning_about_an_option_tfgal_set(blob_dataset, tmp_path):
    """Under op determinism (the default) Keras refuses XLA and warns at compile time;
    tfgal must not ask for it."""
    from tfgal import data
    cfg = config.load(overrides=[f'data.dir="{blob_dataset.root}"', "data.mock=false",
                                 "train.batch_size=8"])
    assert cfg.train.jit_compile and cfg.train.deterministic
    assert not training.jit_compile(cfg)
    assert training.jit_compile(config.merge(cfg, {"train": {"deterministic": False}}))
    manifest = data.Manifest.load(blob_dataset.root)
    import tensorflow as tf
    tf.config.experimental.enable_op_determinism()  # as training.train does
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = training.build_model(cfg, manifest, training.class_weights(manifest))
    assert not [w for w in caught if "jit_compile" in str(w.message)]
    assert model.jit_compile is False
