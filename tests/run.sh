#!/usr/bin/env bash
# The test command (README): installs what the suite needs on a fresh Debian machine, then runs
# the linters (ruff, mypy) and the tests. Re-running is cheap: installed pieces are kept.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
apt_install() {
    # Debian packages, installed only when missing (needs root, as on CI and the dev machines).
    local missing=()
    for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "tests/run.sh: please install: ${missing[*]} (apt-get install, as root)" >&2
        return 1
    fi
    # Package scripts must not start daemons: the tests start their own servers.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    apt_install python3-venv python3-pip
fi
# The real servers the tests start on loopback: a Samba AD domain controller, OpenSSH (target and
# jump host), Chromium to render the HTML report, and Redis (redis-server, with redis-cli: the
# Celery broker of zoned scans). In CI a missing one fails the run.
apt_install samba samba-ad-dc samba-ad-provision winbind krb5-user \
    openssh-server openssh-client chromium redis-server \
    libkrb5-dev  # the kerberos extra (gssapi, pykerberos) builds against it

"$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test,kerberos,celery]'

echo "== ruff"; .venv/bin/ruff check agent checks tests
echo "== mypy"; .venv/bin/mypy
echo "== pytest"; .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
