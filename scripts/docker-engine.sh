#!/usr/bin/env bash
# Make a Docker engine answer on this machine (setup.sh runs this with WITH_DOCKER=1).
# Installs Debian's docker.io (and debootstrap, which builds the stand-in base image where no
# registry is reachable) when dockerd is missing, then starts dockerd in the background when
# nothing answers and no init system would. Needs root on Debian/Ubuntu; elsewhere it says what to do.
set -euo pipefail

ENGINE_WAIT_S=${ENGINE_WAIT_S:-60}
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/dockerd.log}

answers() { docker info >/dev/null 2>&1; }

if answers; then
  echo "setup: a Docker engine answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "setup: WITH_DOCKER=1 installs and starts Docker as root on Debian/Ubuntu only; install Docker Engine" >&2
  echo "       (https://docs.docker.com/engine/install/) and start it, then run again" >&2
  exit 1
fi
if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  echo "setup: installing docker.io and debootstrap (apt)"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker.io debootstrap
fi
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl start docker
else
  # No init system here: dockerd in its own session, in the background, logging to a file.
  echo "setup: starting dockerd in the background (log: $DOCKERD_LOG)"
  setsid dockerd >"$DOCKERD_LOG" 2>&1 < /dev/null &
fi
for _ in $(seq "$ENGINE_WAIT_S"); do
  if answers; then
    echo "setup: Docker engine up ($(docker version --format '{{.Server.Version}}'))"
    exit 0
  fi
  sleep 1
done
echo "setup: dockerd did not answer within ${ENGINE_WAIT_S} s; see $DOCKERD_LOG" >&2
exit 1
