"""One writer per output (`tfgal.locks`): a second writer is refused at once naming the
holder, a killed holder's lock is taken over, a clean release leaves nothing, and two real
`tfgal-data mock` runs on one dataset end with one refusal and one clean dataset."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tfgal import cli, locks
from tfgal.data import Manifest, verify
from tfgal.errors import OutputBusy

BIN = os.path.dirname(sys.executable)
pytestmark = pytest.mark.skipif(locks.fcntl is None, reason="no flock on this platform")

HOLDER = """
import os, sys, time
from tfgal import cli, locks
with locks.hold(sys.argv[1], command="holder-test"):
    if len(sys.argv) > 2:  # a forked child outlives its parent, as a pool worker may
        child = os.fork()
        if child == 0:  # fork hooks have run by now: say so, or the test races them
            os.write(1, b"child-ready\\n")  # one write: lines do not interleave
            time.sleep(120)
            os._exit(0)
        os.write(1, f"{child}\\n".encode())
    os.write(1, b"held\\n")
    time.sleep(120)
"""


def _start_holder(path, fork=False):
    argv = [sys.executable, "-c", HOLDER, str(path)] + (["fork"] if fork else [])
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    lines = [process.stdout.readline().strip() for _ in range(3 if fork else 1)]
    assert "held" in lines and (not fork or "child-ready" in lines), lines
    child = next(int(x) for x in lines if x.isdigit()) if fork else None
    return process, child


def _kill(process):
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def test_a_second_writer_is_refused_naming_the_holder_and_a_killed_holder_is_taken_over(
        tmp_path):
    out = tmp_path / "runs" / "quick"
    process, _ = _start_holder(out)
    try:
        with pytest.raises(OutputBusy) as busy:
            with locks.hold(out):
                pytest.fail("two holders")
        message = str(busy.value)
        assert message.startswith(
            f"{out} is being written by pid {process.pid} (holder-test, since ")
        assert message.endswith("; wait for it to finish or choose another output")
        assert "\n" not in message and busy.value.holder["pid"] == process.pid
        assert locks.holder(out)["pid"] == process.pid
        assert not out.exists()  # the lock is a sibling, never inside the output
    finally:
        _kill(process)
    assert os.path.exists(locks.lock_path(out))  # SIGKILL leaves the file behind
    assert locks.holder(out) is None  # its pid is gone
    start = time.perf_counter()
    with locks.hold(out, command="taker"):
        assert time.perf_counter() - start < 1.0  # taken over at once, no waiting
        assert locks.holder(out)["pid"] == os.getpid()
        with open(locks.lock_path(out)) as f:
            assert json.loads(f.read())["command"] == "taker"  # the stale line replaced
    assert not os.path.exists(locks.lock_path(out))
    assert os.listdir(tmp_path / "runs") == []  # a clean release leaves nothing


def test_a_forked_child_does_not_keep_a_killed_parents_lock(tmp_path):
    out = tmp_path / "data"
    process, child = _start_holder(out, fork=True)
    try:
        _kill(process)
        os.kill(child, 0)  # the child still runs
        with locks.hold(out):
            pass
    finally:
        os.kill(child, signal.SIGKILL)


def test_the_same_process_cannot_hold_one_output_twice(tmp_path):
    out = tmp_path / "catalogue.fits"
    with locks.hold(out):
        with pytest.raises(OutputBusy, match=f"pid {os.getpid()} "):
            with locks.hold(str(out) + "/"):  # the same output, however it is spelled
                pass
        with locks.hold(tmp_path / "other.fits"):  # another output is free
            pass
    assert os.listdir(tmp_path) == []


def test_an_unreadable_lock_file_still_refuses_and_garbage_is_taken_over(tmp_path):
    import fcntl
    out = tmp_path / "ds"
    path = locks.lock_path(out)
    with open(path, "w") as f:
        f.write("not json")
    with locks.hold(out):  # no holder: the garbage is taken over
        pass
    with open(path, "w") as f:  # held with no line: "another process"
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(OutputBusy, match="ds is being written by another process; wait"):
            with locks.hold(out):
                pass


# --------------------------------------------------------------------------- commands

MOCK = ["mock", "--train", "3", "--val", "1", "--test", "1", "--seed", "2", "--workers", "1",
        "--shard-size", "4"]

# The real `tfgal-data mock` main, paused while it holds the lock until GO exists, so the
# race does not depend on how fast either process starts.
PAUSED = """
import os, sys, time
from tfgal import cli
from tfgal.data.mock import builder as mock_build
build_part, go = mock_build._build_part, sys.argv[1]

def paused(*args, **kwargs):
    while not os.path.exists(go):
        time.sleep(0.05)
    return build_part(*args, **kwargs)

mock_build._build_part = paused
sys.exit(cli.data_main(sys.argv[2:]))
"""


def test_two_mock_builds_on_one_dataset_one_refused_one_clean(tmp_path):
    out, go = tmp_path / "mock", tmp_path / "go"
    first = subprocess.Popen([sys.executable, "-c", PAUSED, str(go), *MOCK, "--out", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while locks.holder(out) is None:  # until the first holds the lock
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        second = subprocess.run([os.path.join(BIN, "tfgal-data"), *MOCK, "--out", str(out)],
                                capture_output=True, text=True, timeout=120)
        go.touch()
        stdout, stderr = first.communicate(timeout=120)
    finally:
        first.kill()
    assert second.returncode == 2 and second.stdout == ""
    (line,) = second.stderr.strip().splitlines()
    assert line.startswith(f"error: {out} is being written by pid {first.pid} (python -c ")
    assert line.endswith("; wait for it to finish or choose another output")
    assert first.returncode == 0, stderr[-2000:]
    assert json.loads(stdout)["splits"]["train"]["count"] == 3
    manifest = verify(out)
    assert [manifest.count(s) for s in ("train", "val", "test")] == [3, 1, 1]
    assert Manifest.load(out).generator["seed"] == 2
    assert sorted(os.listdir(tmp_path)) == ["go", "mock"]  # no lock file, no temporary


@pytest.mark.parametrize("command", ["study", "attack", "predict", "gallery", "import-npy"])
def test_each_command_is_refused_while_its_output_is_held(command, tmp_path, capsys):
    # Refused before any input is read: the model and data need not exist.
    missing = str(tmp_path / "missing")
    out = tmp_path / {"predict": "c.fits", "gallery": "g.png"}.get(command, "out")
    main, argv = {
        "study": (cli.study_main, ["--config", "pipelines/quick.toml", "--quiet"]),
        "attack": (cli.attack_main, ["--model", missing, "--data", missing, "--no-progress"]),
        "predict": (cli.predict_main, ["--model", missing, "--data", missing]),
        "gallery": (cli.data_main, ["gallery", "--data", missing]),
        "import-npy": (cli.data_main, ["import-npy", "--source", missing]),
    }[command]
    with locks.hold(out, command="holder-test"):
        status = main(argv + ["--out", str(out)])
    assert status == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"error: {out} is being written by pid {os.getpid()} (holder-test")
    assert not out.exists()
