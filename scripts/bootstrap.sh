#!/usr/bin/env bash
# Create or update the project-local virtualenv (.venv) with stillmotion and the given extras.
# Idempotent and cheap when nothing changed: the install is keyed on the files that define it.
#
#   scripts/bootstrap.sh            # runtime + the bundled sample
#   scripts/bootstrap.sh test       # + what the test suite needs
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

extras=${1:-samples}
venv=.venv
# Python 3.11: the interpreter mediapipe 0.10.21's wheels and this project's pins were tested on.
python=${PYTHON:-}
if [ -z "$python" ]; then
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
            python=$candidate
            break
        fi
    done
fi
if [ -z "$python" ]; then
    echo "stillmotion: needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi

key=$( { cat pyproject.toml constraints.txt scripts/bootstrap.sh; echo "$extras"; } | sha256sum | cut -c1-16)
stamp="$venv/.stillmotion-install-$key"
if [ ! -f "$stamp" ]; then
    echo "stillmotion: installing into $venv (extras: $extras) ..." >&2
    # constraints.txt pins every transitive version that was tested on the project's machines.
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        -c constraints.txt -e ".[$extras]" 2>&1 | grep -v "^WARNING: Location" >&2 || true
    # The safety checker's detector (its ONNX model ships in the wheel). Without its dependencies:
    # nudenet declares opencv-python-headless, which would share cv2/ with opencv-contrib-python;
    # its real runtime needs (onnxruntime, numpy, OpenCV) are the project's own dependencies.
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        -c constraints.txt --no-deps nudenet==3.4.2 2>&1 | grep -v "^WARNING: Location" >&2 || true
    "$venv/bin/python" -m pip check >/dev/null 2>&1 || true
    # Exactly one OpenCV distribution may own the cv2/ folder (mediapipe's opencv-contrib-python).
    opencvs=$("$venv/bin/python" -m pip list --format=freeze 2>/dev/null | grep -ci '^opencv' || true)
    if [ "$opencvs" != "1" ]; then
        echo "stillmotion: expected exactly one OpenCV package, found $opencvs" >&2
        exit 1
    fi
    "$venv/bin/python" -c "import stillmotion, mediapipe, av, cv2, onnxruntime, nudenet" >&2
    rm -f "$venv"/.stillmotion-install-*
    touch "$stamp"
fi
