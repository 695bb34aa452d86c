"""Apache Beam options for tfgal's Beam jobs (``--beam``): the mock builder and catalogues.

Beam is an optional extra (``pip install -e '.[beam]'``). Its pipelines run unchanged on
the local DirectRunner and on Flink, Spark or Dataflow clusters; tfgal passes the user's
``--beam-options`` string (Beam's own command-line flags, e.g. ``"--runner=FlinkRunner
--flink_master=host:8081 --environment_type=LOOPBACK"``) to ``PipelineOptions``.

tfgal's Beam jobs read and write plain paths: on a cluster, the dataset and the output
must lie on a filesystem every worker mounts (NFS, Lustre, GPFS), as for multi-worker
training's checkpoints. Object stores (``gs://``, ``s3://``) are not supported.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex

from tfgal.errors import ConfigError

__all__ = ["EXTRA", "require", "pipeline_options", "option_flags", "direct_defaults", "cores",
           "new_pipeline", "finish", "quiet_logging"]

EXTRA = "pip install -e '.[beam]'"


def require():
    """Imports apache_beam, or raises a `ConfigError` that names the extra to install."""
    try:
        import apache_beam
    except ImportError as err:
        raise ConfigError(f"--beam needs Apache Beam, which is not installed ({err}): "
                          f"{EXTRA}", key="beam") from None
    return apache_beam


def option_flags(text, defaults=()):
    """`text` (a string of Beam flags, or a list) after `defaults`, as a list of flags.

    Flags may be written ``--runner=FlinkRunner`` or, as TFDS's ``--beam_pipeline_options``
    takes them, ``runner=FlinkRunner`` (comma- or space-separated). A flag the user gives
    replaces the default of the same name, and ``--runner`` drops the DirectRunner's.
    """
    tokens = shlex.split(text.replace(",", " ")) if isinstance(text, str) else list(text or [])
    flags = []
    for token in tokens:
        if token.startswith("-") and not token.startswith("--"):
            raise ConfigError(f"Beam options are --name=value flags; received {token!r} in "
                              f"{text!r}", key="beam_options")
        flags.append(token if token.startswith("--") else "--" + token)
    given = {_flag_name(f) for f in flags}
    if "runner" in given:  # the DirectRunner defaults mean nothing to another runner
        defaults = ()
    return [d for d in defaults if _flag_name(d) not in given] + flags


def _flag_name(flag):
    return flag[2:].split("=", 1)[0].replace("-", "_")


def pipeline_options(text=None, defaults=()):
    """Beam `PipelineOptions` from a flag string; an unknown flag is an error naming it.

    Beam itself drops flags it does not know with a warning, which would run a job on
    the wrong runner or settings without a word; tfgal refuses them instead.
    """
    beam = require()
    from apache_beam.options.pipeline_options import PipelineOptions
    flags = option_flags(text, defaults)
    options = PipelineOptions(flags)
    known = set(options.get_all_options(drop_default=False))
    for flag in flags:
        name = _flag_name(flag)
        if name not in known:
            raise ConfigError(f"unknown Beam option {flag!r} (Beam {beam.__version__}; see "
                              "python -m apache_beam.examples.wordcount --help for the "
                              "flags a runner takes)", key="beam_options")
    return options


def new_pipeline(text=None, defaults=()):
    """A `beam.Pipeline` on the options of `pipeline_options`; a runner Beam cannot make
    is a `ConfigError` naming it."""
    beam = require()
    options = pipeline_options(text, defaults)
    try:
        return beam.Pipeline(options=options)
    except ValueError as err:
        raise ConfigError(f"cannot start the Beam pipeline: {err}", key="beam_options") from None


def finish(pipeline, where):
    """Runs `pipeline` to its end; a state other than DONE is an error naming `where`."""
    state = pipeline.run().wait_until_finish()
    if str(state).split(".")[-1] != "DONE":
        from tfgal.errors import DataError
        raise DataError(f"the Beam pipeline ended in state {state}", path=where)
    return state


def direct_defaults(processes):
    """DirectRunner flags: `processes` worker processes (Python-bound work such as GalSim
    rendering needs processes, not threads), or one in-process worker when 1."""
    if processes <= 1:
        return ("--runner=DirectRunner", "--direct_running_mode=in_memory",
                "--direct_num_workers=1")
    # The worker processes would log every step of their harness at INFO.
    return ("--runner=DirectRunner", "--direct_running_mode=multi_processing",
            f"--direct_num_workers={int(processes)}", "--default_sdk_harness_log_level=ERROR")


@contextlib.contextmanager
def quiet_logging(enabled=True):
    """Beam and its imports log warnings through the root logger (printed as
    WARNING:root:...) about cloud clients and platform modules tfgal does not use; hidden
    while the block runs. Errors still show."""
    root = logging.getLogger()
    level = root.level
    if enabled:
        root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def cores():
    return os.cpu_count() or 1
