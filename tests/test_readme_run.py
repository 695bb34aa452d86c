"""The README's examples run as written.

Read from README.md at test time: every ```python block, every command of the "Commands"
table (its synopses, with the placeholders of PLACEHOLDERS filled in and optional parts left
out) and every command of the ```bash blocks (in order, one temporary directory per block).
They run where `data/mock`, `saved_models/quick` and `pipelines/` are what the README says:
a tiny mock set and model made by the Quick start's own `tfgal-train` command. Nothing is
changed but the size arguments of SHRINK / PY_SHRINK; the commands that cannot run here are
listed in SKIPPED with the reason, and the test fails when the README has a command that is
neither run nor listed, or the list names one the README no longer has.

The commands run in this process through their console scripts' entry points, with file
descriptors 1 and 2 captured: a subprocess each would import TensorFlow again (7 s of CPU).
Each must exit with 0 and print one JSON document on stdout, and what it made is checked.
"""

import contextlib
import dataclasses
import fcntl
import importlib.metadata
import io
import json
import os
import pathlib
import re
import shlex
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

REPO = pathlib.Path(__file__).parents[1]
README = REPO / "README.md"

# What the Quick start's tfgal-train renders into data/mock (its test split holds the 16
# galaxies the Python API example loads).
MOCK = {"train": 12, "val": 6, "test": 16}
# Training as small as it gets: 2 steps of 4 galaxies, no TensorBoard images or projector,
# no batch-norm recalibration; model.width shrinks the ResNet18 (the ConvNet ignores it).
TRAIN_SETS = ["train.epochs=1", "train.steps_per_epoch=2", "train.batch_size=4",
              "train.precise_bn_batches=0", "log.images=0", "log.projector=0",
              "model.width=8", "data.mock_workers=1"] + [
              f"data.mock_{split}={n}" for split, n in MOCK.items()]
# One model, 4 galaxies per stage, 2 depths, 10 bootstrap resamples, one corruption and
# no statmorph (seconds per galaxy): the study's stages all run, on almost nothing.
STUDY_SETS = ['study.models=["baseline"]', "study.morphology_n=0", "study.curve_n=4",
              "study.curve_per_decade=1", "study.attack_n=4", "study.attack_popsize=8",
              "study.attack_iters=2", "study.isomap_n=4", "study.isomap_neighbors=2",
              "study.church_windows=1", "study.church_grid=3", "study.bootstrap=10",
              'study.corruptions=["trail"]', "study.corruption_n=4"]
# Size arguments, per command: an option the README gives takes this value, one it does not
# give is added ("--set" values come after the README's own).
#   tfgal-data mock --workers 1: no process pool; with --beam, Beam's DirectRunner in this
#     process instead of one worker process per core, each importing TensorFlow
#     (tests/test_beam.py runs that default);
#   tfgal-data gallery: two corruptions (the README's own example), not all ten (10 s);
#   tfgal-attack: 4 galaxies, population 8, 2 generations (defaults: the paper's 400, 100).
SHRINK = {
    "tfgal-data mock": {"--train": "3", "--val": "3", "--test": "3", "--workers": "1"},
    "tfgal-data gallery": {"--corruptions": "trail,jpeg"},
    "tfgal-attack": {"--n": "4", "--popsize": "8", "--iters": "2"},
    "tfgal-train": {"--set": TRAIN_SETS},
    "tfgal-study": {"--set": TRAIN_SETS + STUDY_SETS},
}
SHARD_PARTS = 2  # `--shard $I/16   # I = 0..15` runs as parts 0/2 and 1/2
# The same for the Python blocks, as text: each must occur in the README.
PY_SHRINK = [
    ("popsize=400", "popsize=8"), ("iters=100", "iters=2"),
    ('"tfgal_mock/default"', '"tfgal_mock/tiny"'),  # 36 galaxies, not 4,500
    # in this process: two worker processes would each import TensorFlow
    ('"--direct_running_mode=multi_processing", "--direct_num_workers=2"',
     '"--direct_running_mode=in_memory", "--direct_num_workers=1"'),
]
# The table's placeholders, per command and option (None: a positional argument).
PLACEHOLDERS = {
    "tfgal-data mock": {"--out": "data/mock-new", "--train": "3", "--val": "3",
                        "--test": "3", "--seed": "0"},
    "tfgal-data import-npy": {"--source": "inputs/npy", "--out": "data/npy"},
    "tfgal-data import-fits": {"--table": "inputs/cutouts.csv", "--out": "data/fits"},
    "tfgal-data verify": {None: "data/mock"},
    "tfgal-data info": {None: "data/mock"},
    "tfgal-data gallery": {"--data": "data/mock", "--out": "gallery.png"},
    "tfgal-train": {"--config": "pipelines/quick.toml"},
    "tfgal-attack": {"--model": "saved_models/quick", "--data": "data/mock",
                     "--out": "results/quick"},
    "tfgal-predict": {"--model": "saved_models/quick", "--data": "data/mock",
                      "--fits-table": "inputs/cutouts.csv", "--split": "test",
                      "--out": "catalogue.fits"},
    "tfgal-study": {"--config": "pipelines/quick.toml", "--out": "studies/quick"},
}
# The inputs of the importers (inputs/): the study's nine .npy files and FITS cutouts.
NPY = {"train": 3, "valid": 2, "test": 2}
CUTOUT_SPLITS = ["train", "train", "train", "val", "test", "test"]
# Commands that cannot run here, as the shell reads them (shlex.join; environment values
# elided).
SKIPPED = {
    "python3 -m venv .venv": "sets up the environment the tests already run in",
    ". .venv/bin/activate": "sets up the environment the tests already run in",
    "pip install -e .": "installs packages: the tests run in the installed environment",
    "pip install -e '.[test,beam]'":
        "installs packages: the tests run in the installed environment",
    "python -m pytest -q -n 2": "the test suite itself",
    "TF_CONFIG=... tfgal-train --config pipelines/paper-resnet18.toml --strategy multiworker":
        "one worker of a multi-worker cluster: TF_CONFIG names host1:12345 and host2:12345",
    "python tools/run_multiworker.py --workers 2 --restarts 2 -- --config "
    "pipelines/quick.toml":
        "two worker processes, each importing TensorFlow and training (about 40 s of CPU); "
        "tests/test_multiworker.py runs tools/run_multiworker.py's run() on tiny data",
    "tfgal-data mock --out /shared/mock-big --train 200000 --val 20000 --test 20000 --beam "
    "'--beam-options=--runner=FlinkRunner --flink_master=HOST:8081 "
    "--environment_type=LOOPBACK'": "needs a Flink cluster (FlinkRunner at HOST:8081)",
}


# --------------------------------------------------------------------------- the README


def readme():
    return README.read_text(encoding="utf-8")


def fenced(text, language):
    """[(heading, code)] of the ```language blocks, with the heading above each."""
    found, heading, block = [], "", None  # block: None outside a fence, False in another
    for line in text.splitlines():
        if line.startswith("```"):
            if block is None:
                block = [] if line[3:].strip() == language else False
            else:
                if block is not False:
                    found.append((heading, "\n".join(block) + "\n"))
                block = None
        elif block is None:
            if line.startswith("#"):
                heading = line.lstrip("#").strip()
        elif block is not False:
            block.append(line)
    return found


@dataclasses.dataclass
class Command:
    where: str          # "table" or "bash N (section)"
    block: int          # the bash block's index; -1 for the table
    position: int       # order in the block
    text: str           # as the shell reads it (shlex.join; environment values elided)
    argvs: list = dataclasses.field(default_factory=list)  # each run, shrunk

    @property
    def skip(self):
        return SKIPPED.get(self.text)

    @property
    def program(self):
        return name(self.argvs[0]) if self.argvs else self.text.split()[0]

    def id(self):
        return f"{self.where.split(' (')[0]}.{self.position}-{self.text[:50]}"


def name(argv):
    """The command a shrink or placeholder rule is keyed by: "tfgal-data mock", ..."""
    return " ".join(argv[:2]) if argv[0] == "tfgal-data" else argv[0]


def shell_commands(code):
    """[(env, words, {variable: values})] of a bash block: continuation lines joined,
    comments dropped, && and ; separated; `# I = 0..15` gives $I its values."""
    out = []
    for line in re.sub(r"\\\n", " ", code).splitlines():
        ranges = {v: range(int(a), int(b) + 1)
                  for v, a, b in re.findall(r"#.*?\b(\w+) = (\d+)\.\.(\d+)", line)}
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words = list(lexer)
        while words:
            cut = next((i for i, w in enumerate(words) if w in ("&&", ";")), len(words))
            part, words = words[:cut], words[cut + 1:]
            assert not any(set(w) <= set("|&;<>()") for w in part), f"unsupported: {line}"
            env = []
            while part and re.match(r"[A-Z_][A-Z0-9_]*=", part[0]):
                env.append(tuple(part.pop(0).split("=", 1)))
            out.append((tuple(env), part, ranges))
    return out


def expand(words, ranges):
    """The runs of one command: $VAR over its values, `--shard k/n` over SHARD_PARTS."""
    runs = [list(words)]
    for var, values in ranges.items():
        runs = [[w.replace(f"${var}", str(v)) for w in run] for run in runs for v in values]
    assert not any("$" in w for run in runs for w in run), f"unset variable in {words}"
    if "--shard" in words:
        at = words.index("--shard") + 1
        shrunk = []
        for run in runs:
            part, _ = run[at].split("/")
            if int(part) < SHARD_PARTS:
                shrunk.append(run[:at] + [f"{part}/{SHARD_PARTS}"] + run[at + 1:])
        runs = shrunk
    return [shrink(run) for run in runs]


def shrink(argv):
    argv = list(argv)
    for option, value in SHRINK.get(name(argv), {}).items():
        if option == "--set":
            argv += [w for v in value for w in ("--set", v)]
        elif option in argv:
            argv[argv.index(option) + 1] = value
        else:
            argv += [option, value]
    return argv


def synopses(text):
    """The commands of the "Commands" table as written, `\\|` unescaped."""
    section = text[text.index("\n## Commands"):]
    section = section[:section.index("\n## ", 1)]
    found = []
    for row in section.splitlines():
        if row.startswith("| `tfgal-"):
            cell = re.split(r"(?<!\\)\|", row)[1]
            found += [s.replace("\\|", "|") for s in re.findall(r"`([^`]+)`", cell)]
    return found


def fill(synopsis):
    """The table synopsis as argvs to run: optional [...] parts left out, each side of an
    `--a X|--b Y` alternative once, placeholders (DIR, N, saved_models/NAME) filled in."""
    while re.search(r"\[[^\[\]]*\]", synopsis):
        synopsis = re.sub(r"\s*\[[^\[\]]*\]", "", synopsis)
    alternative = re.search(r"(--[\w-]+ [^\s|]+)\|(--[\w-]+ \S+)", synopsis)
    forms = [synopsis] if not alternative else [
        synopsis[:alternative.start()] + side + synopsis[alternative.end():]
        for side in alternative.groups()]
    out = []
    for form in forms:
        words = form.split()
        values = PLACEHOLDERS.get(name(words), {})
        for i, word in enumerate(words):
            if re.search(r"(^|/)[A-Z]+(\.\w+)?$", word):
                key = words[i - 1] if words[i - 1].startswith("--") else None
                assert key in values, f"README table: no PLACEHOLDERS value for {word} " \
                                      f"after {key} in {synopsis!r}"
                words[i] = values[key]
        out.append((form, words))
    return out


def commands(text):
    found = []
    for k, synopsis in enumerate(synopses(text)):
        for form, words in fill(synopsis):
            found.append(Command("table", -1, k, form, argvs=[shrink(words)]))
    for b, (heading, code) in enumerate(fenced(text, "bash")):
        for k, (env, words, ranges) in enumerate(shell_commands(code)):
            shown = " ".join([f"{var}=..." for var, _ in env] + [shlex.join(words)])
            runs = expand(words, ranges) if words[0].startswith("tfgal-") else []
            found.append(Command(f"bash {b} ({heading})", b, k, shown, runs))
    return found


COMMANDS = commands(readme())
PYTHON = fenced(readme(), "python")


# --------------------------------------------------------------------------- running


@dataclasses.dataclass
class Result:
    argv: list
    cwd: str
    status: int
    out: str
    err: str


@contextlib.contextmanager
def captured(cwd):
    """The body runs in `cwd` with file descriptors 1 and 2 (sys.stdout, sys.stderr and
    what C++ or child processes write) sent to files; yields {"out", "err"}, filled at
    the end."""
    got = {}
    sys.stdout.flush()
    sys.stderr.flush()
    files = [tempfile.TemporaryFile(), tempfile.TemporaryFile()]
    saved = [os.dup(1), os.dup(2)]
    streams, here = (sys.stdout, sys.stderr), os.getcwd()
    for fd, f in zip((1, 2), files):
        os.dup2(f.fileno(), fd)
    sys.stdout, sys.stderr = (io.TextIOWrapper(io.FileIO(fd, "w", closefd=False),
                                               write_through=True) for fd in (1, 2))
    os.chdir(cwd)
    try:
        yield got
    finally:
        os.chdir(here)
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = streams
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)
        for key, f in zip(("out", "err"), files):
            f.seek(0)
            got[key] = f.read().decode(errors="replace")
            f.close()


def entry_point(program):
    found = [ep for ep in importlib.metadata.entry_points(group="console_scripts")
             if ep.name == program]
    assert found, f"{program} is not an installed console script"
    return found[0].load()


def run_tfgal(argv, cwd):
    """Runs a console script's entry point on `argv` in `cwd`, as its shell would."""
    main = entry_point(argv[0])
    with captured(cwd) as got:
        try:
            status = main(list(argv[1:]))
        except SystemExit as e:  # argparse's usage errors
            status = e.code
    return Result(list(argv), str(cwd), status or 0, got["out"], got["err"])


def link(root, links):
    for path, target in links.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, root / path)


def world_argv():
    quick = [c for c in COMMANDS if "Quick start" in c.where and c.program == "tfgal-train"]
    assert quick, "README: no tfgal-train command in the Quick start"
    return quick[0].argvs[0]


@pytest.fixture(scope="session")
def shared(tmp_path_factory):
    """A directory every xdist worker of the session sees."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def world(shared):
    """The Quick start's tfgal-train, shrunk, run once in shared/readme-world (by the first
    xdist worker that needs it): it renders the tiny data/mock, exports saved_models/quick."""
    root, record = shared / "readme-world", shared / "readme-world.json"
    with open(shared / "readme-world.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.exists():
            root.mkdir()
            link(root, {"pipelines": REPO / "pipelines"})
            result = run_tfgal(world_argv(), root)
            record.write_text(json.dumps(dataclasses.asdict(result)))
    result = Result(**json.loads(record.read_text()))
    check_status(result)
    return root, result


@pytest.fixture(scope="session")
def inputs(tmp_path_factory):
    """The importers' inputs: the study's nine .npy files (12 x 12 pixels, N x C x H x W)
    and 100 x 100 FITS cubes in a label table, for import-fits and predict --fits-table."""
    from astropy.io import fits
    from astropy.table import Table
    root = tmp_path_factory.mktemp("readme-inputs")
    rng = np.random.default_rng(0)
    (root / "npy").mkdir()
    for split, n in NPY.items():
        y10 = rng.normal(0, 5, (n, 3, 12, 12)) + 40 * rng.random((n, 3, 1, 1))
        np.save(root / "npy" / f"images_Y10_{split}.npy", y10)
        np.save(root / "npy" / f"images_Y1_{split}.npy", y10 + rng.normal(0, 15, y10.shape))
        np.save(root / "npy" / f"labels_{split}.npy", np.eye(3)[np.arange(n) % 3])
    (root / "cutouts").mkdir()
    files = [f"cutouts/g{i}.fits" for i in range(len(CUTOUT_SPLITS))]
    for path in files:
        cube = rng.gamma(2.0, 0.05, (3, 100, 100)).astype(np.float32)
        fits.PrimaryHDU(cube).writeto(root / path)
    Table({"file": files, "label": [i % 3 for i in range(len(files))],
           "split": CUTOUT_SPLITS}).write(root / "cutouts.csv")
    return root


@pytest.fixture()
def make_workspace(tmp_path_factory, shared, inputs):
    def make():
        """A fresh directory holding what the README's commands expect beside them (the
        world's files, linked before it is made: only commands that read them wait)."""
        root = tmp_path_factory.mktemp("readme-run")
        data = shared / "readme-world" / "data" / "mock"
        link(root, {"pipelines": REPO / "pipelines", "tools": REPO / "tools", "data/mock": data,
                    "saved_models/quick": shared / "readme-world" / "saved_models" / "quick",
                    # the study's imported files (pipelines/paper-*.toml): the tiny set
                    "data/deepadversaries": data, "inputs": inputs})
        return root
    return make


# Commands that read neither the world's data/mock nor its model.
WORLD_FREE = {"tfgal-data mock", "tfgal-data merge", "tfgal-data import-npy",
              "tfgal-data import-fits"}
_blocks = {}  # bash block -> (its directory, {position: [Result]}), in this process


def results(command, world, make_workspace):
    """The command's runs, after those before it in its bash block (a block is a script);
    the Quick start's tfgal-train is the shared world's run."""
    def run(c, root):
        if c.argvs == [world_argv()]:
            return [world[1]]
        return [run_tfgal(argv, root) for argv in c.argvs]
    if command.block < 0:
        return run(command, make_workspace())
    if command.block not in _blocks:
        _blocks[command.block] = (make_workspace(), {})
    root, done = _blocks[command.block]
    for earlier in COMMANDS:
        if earlier.block == command.block and earlier.position <= command.position \
                and earlier.position not in done and not earlier.skip:
            done[earlier.position] = run(earlier, root)
    return done[command.position]


# --------------------------------------------------------------------------- checks


def check_status(result):
    tail = result.err[-3000:]
    assert result.status == 0, f"{shlex.join(result.argv)} exited {result.status}:\n{tail}"
    try:
        return json.loads(result.out)  # one document and nothing else
    except json.JSONDecodeError as e:
        raise AssertionError(f"{shlex.join(result.argv)}: stdout is not one JSON document "
                             f"({e}):\n{result.out[:2000]}") from None


def option(argv, flag):
    return argv[argv.index(flag) + 1] if flag in argv else None


def check_dataset(doc, argv, cwd):
    command = argv[1]
    if command == "mock" and "--shard" in argv:
        assert doc["part"] == option(argv, "--shard")
        return
    expected = MOCK  # verify, info: the world's data/mock
    if command == "mock":
        expected = {s: int(option(argv, f"--{s}")) for s in MOCK}
    elif command == "merge":  # the parts of the mock command before it
        expected = {s: int(SHRINK["tfgal-data mock"][f"--{s}"]) for s in MOCK}
    elif command == "import-npy":
        expected = {"train": NPY["train"], "val": NPY["valid"], "test": NPY["test"]}
    elif command == "import-fits":
        expected = {s: CUTOUT_SPLITS.count(s) for s in MOCK}
    assert {split: v["count"] for split, v in doc["splits"].items()} == expected
    assert os.path.samefile(cwd / doc["root"], cwd / (option(argv, "--out") or argv[2]))


def check_gallery(doc, argv, cwd):
    with open(cwd / option(argv, "--out"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert doc["classes"] == ["spiral", "elliptical", "merger"]


def check_train(doc, argv, cwd):
    assert os.path.exists(cwd / doc["export_dir"] / "saved_model.pb")
    assert set(doc["test_accuracy"]) == {"Y10", "Y1"}
    assert all(0 <= a <= 1 for a in doc["test_accuracy"].values())


def check_attack(doc, argv, cwd):
    n = int(option(argv, "--n"))
    assert doc["n_galaxies"] == n == doc["n_correct"] + doc["n_misclassified"]
    for output in ("attack.json", "attack.csv"):
        assert (cwd / option(argv, "--out") / output).exists()


def check_predict(doc, argv, cwd):
    from astropy.table import Table
    table = Table.read(cwd / option(argv, "--out"))
    n = MOCK["test"] if "--data" in argv else CUTOUT_SPLITS.count(option(argv, "--split"))
    assert len(table) == n and table.meta["NGAL"] == n
    total = table["p_spiral"] + table["p_elliptical"] + table["p_merger"]
    np.testing.assert_allclose(total, 1, atol=1e-5)
    if "--latent" in argv:
        assert table["latent"].shape == (n, 256)


def check_study(doc, argv, cwd):
    assert (cwd / doc["report"]).exists()
    assert set(doc["accuracy"]) == {"baseline"}
    assert set(doc["accuracy"]["baseline"]) >= {"Y10", "Y1"}


CHECKS = {"tfgal-data": check_dataset, "tfgal-data gallery": check_gallery,
          "tfgal-train": check_train, "tfgal-attack": check_attack,
          "tfgal-predict": check_predict, "tfgal-study": check_study}


def check_serving(namespace, out, root):
    served = namespace["out"]
    assert served["probabilities"].shape == (1, 3) and served["latent"].shape == (1, 256)
    np.testing.assert_allclose(np.sum(served["probabilities"]), 1, rtol=1e-5)
    assert out == ""


def check_attack_example(namespace, out, root):
    test, trailed = namespace["test"], namespace["trailed"]
    n = len(test["labels"])
    assert n == MOCK["test"] and list(trailed["galaxy_id"]) == list(test["galaxy_id"])
    assert not np.allclose(trailed["images"], test["images"])  # the trail is there
    first, second = out.splitlines()
    rate, shape = re.fullmatch(r"(\S+) (\(.*\))", first).groups()
    assert 0 <= float(rate) <= 1 and shape == f"({n}, 256)"
    assert float(second) in {k / n for k in range(n + 1)}


def check_tfds(namespace, out, root):
    builder = namespace["builder"]
    assert builder.data_dir.startswith(str(root))  # not ~/tensorflow_datasets
    splits = {name: s.num_examples for name, s in builder.info.splits.items()}
    config = builder.builder_config
    assert splits == {"train": config.n_train, "validation": config.n_val,
                      "test": config.n_test} == {"train": 24, "validation": 6, "test": 6}


# Each ```python block's check, found by a marker in its code.
PY_CHECKS = {'signatures["serving_default"]': check_serving,
             "OnePixelAttack": check_attack_example, "tfds.builder": check_tfds}


# --------------------------------------------------------------------------- the tests


def test_readme_has_the_examples_this_test_runs():
    text = readme()
    programs = {c.program for c in COMMANDS if not c.skip}
    assert programs >= {"tfgal-data mock", "tfgal-data import-npy", "tfgal-data import-fits",
                        "tfgal-data verify", "tfgal-data info", "tfgal-data gallery",
                        "tfgal-data merge", "tfgal-train", "tfgal-attack", "tfgal-predict",
                        "tfgal-study"}
    assert len(PYTHON) >= 3
    for old, _ in PY_SHRINK:
        assert old in text, f"PY_SHRINK: the README no longer has {old!r}"


def test_commands_are_parsed_as_a_shell_would():
    code = ("a --x \"b c\" && B=1 d $I/4   # I = 0..1\n"
            "# a comment line\n"
            "e --f \\\n  g  # trailing comment\n")
    assert shell_commands(code) == [
        ((), ["a", "--x", "b c"], {"I": range(0, 2)}),  # the line's comment: both commands
        ((("B", "1"),), ["d", "$I/4"], {"I": range(0, 2)}), ((), ["e", "--f", "g"], {})]
    assert expand(["tfgal-data", "merge", "--shard", "$I/16"], {"I": range(16)}) == [
        ["tfgal-data", "merge", "--shard", "0/2"], ["tfgal-data", "merge", "--shard", "1/2"]]
    assert fill("tfgal-predict --model saved_models/NAME --data DIR|--fits-table T "
                "--split S [--latent [--beam]]")[1][1] == [
        "tfgal-predict", "--model", "saved_models/quick", "--fits-table",
        "inputs/cutouts.csv", "--split", "test"]
    assert shrink(["tfgal-attack", "--n", "150", "--popsize", "400"])[2:] == [
        "4", "--popsize", "8", "--iters", "2"]


def test_skipped_commands_are_exactly_the_expected_ones():
    skipped = {c.text for c in COMMANDS if c.skip}
    assert skipped == set(SKIPPED), "SKIPPED names commands the README no longer has"
    for c in COMMANDS:
        assert c.skip or c.argvs, f"{c.where}: {c.text!r} is neither run nor in SKIPPED"


def test_commands_in_the_prose_parse():
    """The commands written inline in the text (not run): their options exist and their
    --set keys are valid."""
    from tfgal import cli, config, study
    from tfgal.cli import common
    lines, fence = [], False
    for line in readme().splitlines():
        fence = fence != line.startswith("```")
        if not fence and not line.startswith(("```", "| `")):
            lines.append(line)
    spans = [s for s in re.findall(r"`([^`]+)`", "\n".join(lines))
             if s.startswith("tfgal-") and " --" in s and "..." not in s]
    assert len(spans) >= 4
    for span in spans:
        words = shlex.split(re.sub(r"\[(--[^\[\]]*)\]", r"\1", span))
        module = getattr(cli, words[0].split("-")[1])
        try:
            args = module.parser().parse_args(words[1:])
        except SystemExit:
            raise AssertionError(f"README: {span!r} does not parse") from None
        if getattr(args, "config", None):
            load = study.load_config if words[0] == "tfgal-study" else config.load
            load(REPO / args.config, common.train_overrides(args))


def test_every_option_of_the_table_exists():
    """The table's optional parts are not run: each option they name must still exist."""
    import argparse

    from tfgal import cli
    checked = 0
    for synopsis in synopses(readme()):
        words = synopsis.split()
        parser = getattr(cli, words[0].split("-")[1]).parser()
        if words[0] == "tfgal-data":
            sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            parser = sub.choices[words[1]]
        for flag in re.findall(r"(?<![\w-])(--[\w-]+)", synopsis):
            assert flag in parser._option_string_actions, f"README table: {flag} in {synopsis}"
            checked += 1
    assert checked >= 30


@pytest.mark.parametrize("command", COMMANDS, ids=Command.id)
def test_command_runs_as_documented(command, make_workspace, request):
    if command.skip:
        pytest.skip(f"{command.text}: {command.skip}")
    script = [c for c in COMMANDS if c.block == command.block >= 0
              and c.position < command.position and not c.skip] + [command]
    world = None
    if any(c.program not in WORLD_FREE for c in script):
        world = request.getfixturevalue("world")
    for result in results(command, world, make_workspace):
        doc = check_status(result)
        check = CHECKS.get(name(result.argv)) or CHECKS[result.argv[0]]
        check(doc, result.argv, pathlib.Path(result.cwd))


@pytest.mark.parametrize("number", range(len(PYTHON)),
                         ids=[f"{k}-{heading}" for k, (heading, _) in enumerate(PYTHON)])
def test_python_example_runs(number, make_workspace, monkeypatch, request):
    heading, code = PYTHON[number]
    if "saved_models/" in code or "data/mock" in code:
        request.getfixturevalue("world")
    for old, new in PY_SHRINK:
        code = code.replace(old, new)
    checks = [check for marker, check in PY_CHECKS.items() if marker in code]
    assert len(checks) == 1, f"README python block under {heading!r}: give it one PY_CHECKS"
    root = make_workspace()
    if "tensorflow_datasets" in code:  # TFDS's data directory: here, not ~
        from tensorflow_datasets.core import constants
        monkeypatch.setattr(constants, "DATA_DIR", str(root / "tensorflow_datasets"))
    namespace = {"__name__": "__readme__"}
    with captured(root) as got:
        exec(compile(code, f"README.md, python block under {heading!r}", "exec"), namespace)
    checks[0](namespace, got["out"], root)
