"""What the ``tfgal-*`` commands share: running one, its help, its output streams.

`run` parses a command's arguments before anything imports TensorFlow, so ``--help`` and
usage errors answer at once; then it runs the command with stdout pointed at stderr, so
that Keras' epoch lines, progress and messages all go to stderr and the only thing on
stdout is the result a command hands to `result` (one JSON document), as Unix tools do.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import textwrap

from tfgal import config
from tfgal.errors import TfgalError

__all__ = ["VERBOSE_HELP", "HelpFormatter", "new_parser", "run", "result", "verbose",
           "say", "say_device", "beam_args", "beam_choice", "quiet_beam", "experiment_args",
           "train_overrides", "path_hints", "depth_type", "NOISELESS", "DEPTH_FORMS"]

VERBOSE_HELP = "keep TensorFlow's own C++ start-up log on stderr (hidden by default)"

_state = {"verbose": False, "stdout": None}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default, unless the help already says it;
    descriptions and examples keep their line breaks."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        shown = not (default is None or default is False or default == []
                     or default is argparse.SUPPRESS)
        if action.option_strings and shown and "default" not in text:
            text += " (default: %(default)s)"
        return text


def new_parser(prog, description, examples=None):
    """An `argparse.ArgumentParser` with tfgal's help format; `examples`: lines shown
    under "examples:" at the end of ``--help``."""
    epilog = None
    if examples:
        epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)
    description = "\n\n".join(textwrap.fill(part, 88) for part in description.split("\n\n"))
    return argparse.ArgumentParser(prog=prog, description=description, epilog=epilog,
                                   formatter_class=HelpFormatter)


def run(module, argv):
    """Runs a command: ``module.parser()`` parses `argv` (None: the console script's own
    arguments), then ``module.main(args, parser)`` runs with stdout sent to stderr.

    A console script (not a test calling in) also gets its stderr filtered of
    TensorFlow's C++ log unless ``--verbose`` is given (`tfgal.console`).
    """
    console_script = argv is None
    argv = sys.argv[1:] if console_script else list(argv)
    parser = module.parser()
    args = parser.parse_args(argv)  # --help and usage errors end here, TensorFlow unloaded
    args.argv = argv
    _state["verbose"] = bool(getattr(args, "verbose", False))
    from tfgal import console
    if console_script and not _state["verbose"]:
        console.hide_tensorflow_log()
    elif not _state["verbose"]:
        console.quiet_tensorflow()
    _state["stdout"] = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return module.main(args, parser) or 0
    except TfgalError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing half-written was kept", file=sys.stderr)
        return 130
    finally:
        _state["stdout"] = None


def result(document):
    """Prints a command's result, one JSON document, on the real stdout."""
    out = _state["stdout"] or sys.stdout
    print(json.dumps(document, indent=2), file=out, flush=True)


def verbose():
    return _state["verbose"]


def say(text):
    """One message line on stderr."""
    print(text, file=sys.stderr, flush=True)


def say_device():
    """One stderr line on what TensorFlow computes on (commands that train or infer)."""
    from tfgal import console
    say(console.device_line())


def beam_args(parser, help_text):
    parser.add_argument("--beam", action="store_true", help=help_text)
    parser.add_argument("--beam-options", default=None, metavar="FLAGS",
                        help="Beam pipeline flags in one string (needs --beam), e.g. "
                             "--beam-options=\"--runner=FlinkRunner --flink_master=HOST:8081\"")


def beam_choice(args, parser):
    """None (local), True (DirectRunner defaults) or the user's Beam flags."""
    if args.beam_options is not None and not args.beam:
        parser.error("--beam-options needs --beam")
    return (True if args.beam_options is None else args.beam_options) if args.beam else None


def quiet_beam(beam):
    from tfgal import beam as beam_lib
    return beam_lib.quiet_logging(beam is not None and not verbose())


NOISELESS = "noiseless"  # tfgal.data.observation.NOISELESS (that module loads TensorFlow)
DEPTH_FORMS = ("Y10, Y1, Y<years> or <years>y (survey years, e.g. Y3 or 0.5y), or "
               "exp:<g>,<r>,<i> (exposure seconds per band)")


def depth_type(noiseless=True):
    """An argparse ``type=`` for a depth option: the value checked at parse time with
    `tfgal.survey.Depth.parse` (NumPy only) and kept as typed, so that a bad depth is a
    usage error naming the option. `noiseless`: "noiseless" (mock data's flux) is valid."""
    def depth(text):
        if noiseless and text == NOISELESS:
            return text
        from tfgal import survey
        try:
            survey.Depth.parse(text)
        except TfgalError as e:
            reason = "" if getattr(e, "valid", None) else f" ({e})"  # else just the forms
            forms = DEPTH_FORMS + (", or noiseless (mock data's flux, no noise added)"
                                   if noiseless else "; omit the option for noiseless flux")
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a depth{reason}; a depth is {forms}") from None
        return text
    return depth


def experiment_args(parser, example):
    """--config, --set, --strategy and --verbose: shared by the commands that train."""
    parser.add_argument("--config", required=True,
                        help="experiment config, e.g. pipelines/quick.toml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a config key, e.g. --set {example} (repeatable)")
    parser.add_argument("--strategy", choices=config.choices("train.strategy"),
                        help="tf.distribute strategy for training (config train.strategy)")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)


def train_overrides(args):
    """--out/--logdir/--strategy as config overrides, after the --set ones."""
    overrides = list(args.set)
    if getattr(args, "out", None):
        overrides.append(f"export.dir={json.dumps(args.out)}")
    if getattr(args, "logdir", None):
        overrides.append(f"log.dir={json.dumps(args.logdir)}")
    if getattr(args, "strategy", None):
        overrides.append(f"train.strategy={json.dumps(args.strategy)}")
    return overrides


def path_hints(config_path, cfg):
    """Lines for the config's relative input paths (``data.dir``) that the current directory
    lacks but the config's own project (the directory above its ``pipelines/``) holds:
    paths are relative to the current directory, as for every Unix tool, and a run from
    elsewhere should say so before it renders a new mock set there."""
    project = os.path.dirname(os.path.dirname(os.path.abspath(config_path)))
    if not os.path.isdir(project) or os.path.samefile(project, os.getcwd()):
        return []
    lines = []
    for key, value in (("data.dir", cfg.data.dir),):
        if os.path.isabs(value) or os.path.exists(value):
            continue
        there = os.path.join(project, value)
        if os.path.exists(there):
            lines.append(
                f"note: {key} {value!r} is read relative to the current directory "
                f"{os.getcwd()}, where it does not exist; {there} does (beside "
                f"{os.path.relpath(os.path.abspath(config_path), project)}): run from "
                f"{project}, or --set {key}={json.dumps(there)}")
    return lines
