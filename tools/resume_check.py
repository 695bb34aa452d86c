"""A training killed with SIGKILL and run again, next to the same training run straight.

    python tools/resume_check.py --config pipelines/quick.toml --kill-epoch 4 \
        --kill-step 40 --checkpoint-steps 20 --out /tmp/resume-check

Runs ``tfgal-train`` twice with one config: once straight through, once killed (SIGKILL)
when its saved state reaches `--kill-step` steps into epoch `--kill-epoch` (1-based; step
0: at that epoch's start), then run again with the same command. Prints both histories
(wall-clock columns aside), both exports' test accuracies and whether the exported weights
are bit for bit equal; exits 1 if anything differs.
"""

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import time

TIMING = ("epoch_seconds", "train_seconds")


def _command(args, tag):
    return ["tfgal-train", "--config", args.config,
            "--set", f"train.checkpoint_steps={args.checkpoint_steps}", *args.set,
            "--logdir", os.path.join(args.out, tag, "run"),
            "--out", os.path.join(args.out, tag, "model")]


def _run(command):
    started = time.time()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.time() - started


def _kill_at(args, command):
    """Runs `command` until its saved state reaches the kill point, then SIGKILLs it."""
    position = os.path.join(args.out, "killed", "run", "backup", "position.json")
    target = (args.kill_epoch - 1, args.kill_step)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while process.poll() is None:
        try:
            with open(position) as f:
                at = json.load(f)
        except (OSError, ValueError):
            at = None
        if at and (at["epoch"], at["step"]) >= target:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return at
        time.sleep(0.05)
    raise SystemExit("the run finished before it reached the kill point")


def _history(args, tag):
    with open(os.path.join(args.out, tag, "run", "history.csv")) as f:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


def _summary(args, tag):
    with open(os.path.join(args.out, tag, "run", "summary.json")) as f:
        return json.load(f)


def _weights(args, tag):
    from tfgal.model import export
    return export.load(os.path.join(args.out, tag, "model")).keras_replica().get_weights()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="pipelines/quick.toml")
    parser.add_argument("--set", action="append", default=[], help="more config overrides")
    parser.add_argument("--kill-epoch", type=int, default=4)
    parser.add_argument("--kill-step", type=int, default=40)
    parser.add_argument("--checkpoint-steps", type=int, default=20)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    args.set = [a for s in args.set for a in ("--set", s)]
    if os.path.exists(args.out):
        raise SystemExit(f"{args.out} exists; choose a new --out")

    straight_s = _run(_command(args, "straight"))
    killed_at = _kill_at(args, _command(args, "killed"))
    resumed = subprocess.run(_command(args, "killed"), check=True, capture_output=True,
                             text=True)
    said = [line for line in resumed.stderr.splitlines() if line.startswith("tfgal-train:")]

    a, b = _history(args, "straight"), _history(args, "killed")
    keys = [k for k in a[0] if k in ("epoch", "loss", "source_accuracy", "val_loss",
                                      "val_source_accuracy", "val_target_accuracy")]
    print(f"straight run: {straight_s:.0f} s; killed with SIGKILL at its saved state "
          f"{killed_at} (epoch and step 0-based), then: {' / '.join(said)}")
    print("| run | " + " | ".join(keys) + " |")
    print("|" + " --- |" * (len(keys) + 1))
    for tag, rows in (("straight", a), ("killed + resumed", b)):
        for row in rows:
            print(f"| {tag} | " + " | ".join(row[k] for k in keys) + " |")
    same_history = a == b
    wa, wb = _weights(args, "straight"), _weights(args, "killed")
    same_weights = len(wa) == len(wb) and all((x == y).all() for x, y in zip(wa, wb))
    sa, sb = _summary(args, "straight"), _summary(args, "killed")
    print(f"test accuracy straight {sa['test_accuracy']}, killed + resumed {sb['test_accuracy']}")
    print(f"history.csv equal (wall clock aside): {same_history}; exported weights bit for "
          f"bit equal: {same_weights}")
    return 0 if same_history and same_weights and sa["test_accuracy"] == sb["test_accuracy"] \
        else 1


if __name__ == "__main__":
    sys.exit(main())
