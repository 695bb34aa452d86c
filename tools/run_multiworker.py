"""Start N local `tfgal-train` workers on loopback ports under MultiWorkerMirroredStrategy.

The way to try multi-worker training on one machine (and what the tests use). Each
worker gets its own TF_CONFIG (cluster of N workers on 127.0.0.1, task index i);
worker 0 is the chief and alone writes logs, checkpoints and the export.

    python tools/run_multiworker.py --workers 2 -- --config pipelines/quick.toml

With `--restarts K`, a worker that dies is started again (up to K times in all), and
rejoins from the chief's last saved training state (`tfgal.model.callbacks.TrainingState`),
as TensorFlow's multi-worker guide describes for `BackupAndRestore`. Exits with the first non-zero worker status, else 0.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time

TRAIN = "import sys; from tfgal.cli import train_main; sys.exit(train_main())"


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(addresses, index):
    return json.dumps({"cluster": {"worker": addresses},
                       "task": {"type": "worker", "index": index}})


def start_worker(addresses, index, train_args, log_dir):
    env = dict(os.environ, TF_CONFIG=tf_config(addresses, index),
               TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    log = open(os.path.join(log_dir, f"worker-{index}.log"), "ab")
    command = [sys.executable, "-c", TRAIN, *train_args, "--strategy", "multiworker"]
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def run(n_workers, train_args, *, log_dir, restarts=0, timeout_s=3600, on_start=None):
    """Runs the workers to completion; returns their exit statuses (worker order).

    `on_start(index, process)` is called after each (re)start, e.g. to kill one in tests.
    """
    os.makedirs(log_dir, exist_ok=True)
    addresses = [f"127.0.0.1:{p}" for p in free_ports(n_workers)]
    procs = [start_worker(addresses, i, train_args, log_dir) for i in range(n_workers)]
    for i, p in enumerate(procs):
        if on_start:
            on_start(i, p)
    deadline = time.monotonic() + timeout_s
    statuses = [None] * n_workers
    while None in statuses:
        if time.monotonic() > deadline:
            for p in procs:
                p.kill()
            raise TimeoutError(f"workers still running after {timeout_s} s; logs in {log_dir}")
        for i, p in enumerate(procs):
            if statuses[i] is not None or p.poll() is None:
                continue
            if p.returncode != 0 and restarts > 0:
                restarts -= 1
                print(f"worker {i} exited with {p.returncode}; restarting", file=sys.stderr)
                procs[i] = start_worker(addresses, i, train_args, log_dir)
                if on_start:
                    on_start(i, procs[i])
            else:
                statuses[i] = p.returncode
        time.sleep(0.5)
    return statuses


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--restarts", type=int, default=0)
    parser.add_argument("--log-dir", default="runs/multiworker-logs")
    parser.add_argument("train_args", nargs=argparse.REMAINDER,
                        help="arguments of tfgal-train, after --")
    args = parser.parse_args()
    train_args = [a for a in args.train_args if a != "--"]
    statuses = run(args.workers, train_args, log_dir=args.log_dir, restarts=args.restarts)
    for i, status in enumerate(statuses):
        print(f"worker {i}: exit {status} (log {os.path.join(args.log_dir, f'worker-{i}.log')})")
    return next((s for s in statuses if s), 0)


if __name__ == "__main__":
    sys.exit(main())
