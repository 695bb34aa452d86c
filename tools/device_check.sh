#!/usr/bin/env bash
# The prepared device check: installs what it needs, then runs tools/device_check.py, which
# measures (attack vs ART, training in float32 and mixed precision, pipeline, tfgal-predict)
# and writes device_check.json and device_check.md, printing the table last.
#
#   tools/device_check.sh [--out DIR] [--no-install] [--size small|full] [--work DIR]
#
# Install step: wheels in .whl/ (repository root) when that folder exists, offline and
# without dependencies (for a machine with no network); otherwise, unless --no-install,
# `pip install -e '.[bench]'`. Output: --out, else $OUT, else device_check/.
# The interpreter: $PYTHON, else python3. Size: full with a GPU (8 minutes), small without
# (5 minutes on 2 cores). A hard limit of 570 s ends a run that would hang; the JSON written
# after each section keeps what was measured.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
OUT_DIR=${OUT:-$ROOT/device_check}
INSTALL=1
ARGS=()
say() { echo "device_check: $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT_DIR=${2:?--out needs a folder}; shift 2 ;;
        --out=*) OUT_DIR=${1#--out=}; shift ;;
        --no-install) INSTALL=0; shift ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) ARGS+=("$1"); shift ;;
    esac
done

mkdir -p "$OUT_DIR" && OUT_DIR=$(cd "$OUT_DIR" && pwd) || exit 2  # before cd: a relative --out
cd "$ROOT" || exit 2
if ! command -v "$PY" >/dev/null; then
    say "no Python interpreter '$PY' (set PYTHON)"; exit 2
fi

if [ -d .whl ]; then
    shopt -s nullglob
    wheels=(.whl/*.whl)
    if [ ${#wheels[@]} -gt 0 ]; then
        say "installing ${#wheels[@]} wheel(s) from .whl/ (no index, no dependencies)"
        "$PY" -m pip install --disable-pip-version-check --no-index --no-deps "${wheels[@]}" \
            || say "WARNING: installing from .whl/ failed; continuing with what is installed"
    else
        say ".whl/ holds no wheels: nothing installed"
    fi
elif [ "$INSTALL" = 1 ]; then
    say "installing tfgal with its bench extra (pip install -e '.[bench]')"
    # Bounded retries: a machine without network fails here in seconds, not minutes.
    "$PY" -m pip install --disable-pip-version-check --retries 1 --timeout 20 -e '.[bench]' \
        || say "WARNING: pip install failed (no network?); continuing with what is installed"
fi

# tfgal from this tree, whether or not pip installed it.
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    say "driver: $(nvidia-smi -L | head -n 1)"
    # TensorFlow must see it too: device_check.py stops with a clear message when it does not.
fi

timeout -k 15 570 "$PY" "$ROOT/tools/device_check.py" --out "$OUT_DIR" ${ARGS[@]+"${ARGS[@]}"}
rc=$?
if [ $rc = 124 ] || [ $rc = 137 ]; then
    say "stopped at the 570 s limit; $OUT_DIR/device_check.json holds the sections finished"
fi
exit $rc
