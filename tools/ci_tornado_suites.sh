#!/usr/bin/env bash
# Tornado's own test suite under tornado_cgen.install() (tools/tornado_suite.py)
# on every (CPython, Tornado) pair below; .ci/run calls it, and it runs alone:
#
#     bash tools/ci_tornado_suites.sh [WORKDIR]
#
# Each pair gets a fresh virtual environment with Tornado from PyPI and this
# package built from the source tree with warnings as errors, and runs the
# suite from WORKDIR (outside the source tree), so that the installed package
# and the installed wheel's tornado.test are the ones under test.  The pairs
# run one after the other (each takes 15-40 s; the machine has two cores);
# every pair runs even when one fails, and the end says which failed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -gt 0 ]; then
    WORK=$1
    mkdir -p "$WORK"
else
    WORK=$(mktemp -d /tmp/tcg-tornado-suites.XXXXXX)
    trap 'rm -rf "$WORK"' EXIT
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

# CPython minor, Tornado release.  Per CPython version the newest Tornado 6
# that supports it (6.6 needs 3.11), plus the oldest install() supports and
# the last 6.5 on 3.11.  Pinned, so that a new Tornado release is a change
# made here, with its counters measured (FULL_RUN_MINIMUM in
# tools/tornado_suite.py), not a CI run that turns red by itself.
MATRIX=(
    "3.11 6.6.1"
    "3.11 6.5.7"
    "3.11 6.2"
    "3.10 6.5.10"
    "3.12 6.6.1"
    "3.13 6.6.1"
)

# The interpreter for a CPython minor version: the machine image's pyenv
# build (as .ci/run's other-versions step uses), else pythonX.Y on PATH.
find_python() {
    local py
    py=$(ls -d /root/.pyenv/versions/"$1".*/bin/python 2>/dev/null | sort -V | tail -1 || true)
    if [ -z "$py" ]; then
        py=$(command -v "python$1" || true)
    fi
    printf '%s' "$py"
}

# The package is built from a copy of the source tree: a build/ left in the
# tree (an in-place development build, other flags) is never reused.
mkdir -p "$WORK/src"
cp -r "$ROOT"/ext "$ROOT"/python "$ROOT"/setup.py "$ROOT"/pyproject.toml \
      "$ROOT"/README.md "$WORK/src/"
find "$WORK/src" \( -name '*.so' -o -name __pycache__ \) -prune -exec rm -rf {} +

failed=()
ran=0
for pair in "${MATRIX[@]}"; do
    read -r minor tornado <<<"$pair"
    py=$(find_python "$minor")
    if [ -z "$py" ]; then
        echo "CPython $minor: not on this machine, Tornado $tornado skipped"
        continue
    fi
    printf '\n---- Tornado %s on CPython %s (%s) ----\n' "$tornado" "$minor" "$py"
    start=$SECONDS
    venv="$WORK/venv-$minor-tornado-$tornado"
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install -q "tornado==$tornado"
    (cd "$WORK/src" && TCG_WERROR=1 "$venv/bin/python" -m pip install -q --no-cache-dir .)
    # From WORKDIR: neither the source tree's python/ nor its build is on
    # sys.path; say which files are under test.
    if (cd "$WORK" && "$venv/bin/python" - <<'EOF'
import sys, tornado, tornado_cgen._core as core
print("tornado", tornado.version, "from", tornado.__file__)
print("tornado_cgen from", core.__file__)
assert core.__file__.startswith(sys.prefix), "not the installed package"
EOF
       ) && (cd "$WORK" && "$venv/bin/python" "$ROOT/tools/tornado_suite.py"); then
        echo "Tornado $tornado on CPython $minor: passed in $((SECONDS - start)) s"
    else
        echo "Tornado $tornado on CPython $minor: FAILED (after $((SECONDS - start)) s)"
        failed+=("Tornado $tornado on CPython $minor")
    fi
    ran=$((ran + 1))
    rm -rf "$venv"
done

if [ ${#failed[@]} -gt 0 ]; then
    printf '\nTornado suite failed: %s\n' "${failed[@]}"
    exit 1
fi
if [ "$ran" -eq 0 ]; then
    echo "Tornado suite: no pair could run (no interpreter found)"
    exit 1
fi
printf '\nTornado suite passed on %d of %d pairs\n' "$ran" "${#MATRIX[@]}"
