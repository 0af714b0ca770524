#!/usr/bin/env bash
# Install a single-node Slurm (Debian packages) for the test suite.
# Idempotent: does nothing when slurmctld, slurmd, sinfo/sbatch/squeue and munged are present.
# Needs root (or passwordless sudo) and a reachable Debian mirror. Exits non-zero with a message otherwise.
# Package services are NOT started here (policy-rc.d blocks them); tests/slurm/cluster.py starts the
# daemons itself, in the foreground, and stops them by PID.
set -euo pipefail

slurm_version() { dpkg-query -W -f='${Version}' slurm-client 2>/dev/null || echo "?"; }

have_all() {
    command -v slurmctld >/dev/null 2>&1 &&
    command -v slurmd >/dev/null 2>&1 &&
    command -v sbatch >/dev/null 2>&1 &&
    command -v squeue >/dev/null 2>&1 &&
    command -v sinfo >/dev/null 2>&1 &&
    command -v scontrol >/dev/null 2>&1 &&
    { command -v munged >/dev/null 2>&1 || [ -x /usr/sbin/munged ]; }
}

if have_all; then
    echo "install.sh: Slurm and munge already installed (slurm-client $(slurm_version))"
    exit 0
fi

fail() { echo "install.sh: ERROR: $*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        fail "need root (or passwordless sudo) to apt-get install slurmctld slurmd slurm-client munge"
    fi
fi
command -v apt-get >/dev/null 2>&1 || fail "apt-get not found: this installer only supports Debian/Ubuntu"

# Keep the packages' init scripts from starting daemons (there may be no init system at all).
POLICY=/usr/sbin/policy-rc.d
CREATED_POLICY=0
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod +x "$POLICY"
    CREATED_POLICY=1
fi
cleanup() { if [ "$CREATED_POLICY" = 1 ]; then $SUDO rm -f "$POLICY"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
echo "install.sh: apt-get update" >&2
$SUDO apt-get update -qq || fail "apt-get update failed (no network / no Debian mirror?)"
echo "install.sh: apt-get install slurmctld slurmd slurm-client munge" >&2
$SUDO apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null \
    || fail "apt-get install slurmctld slurmd slurm-client munge failed"

have_all || fail "packages installed but slurmctld/slurmd/sbatch/squeue/sinfo/munged still not found on PATH"
echo "install.sh: installed slurm-client $(slurm_version)"
