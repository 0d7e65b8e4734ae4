#!/usr/bin/env bash
# Installs or starts what the project needs outside Python, on Debian/Ubuntu.
#   system: what `make run` needs (Python venv support, redis-server).
#   test:   also chromium for browser tests, and PostgreSQL running when this machine has it.
#   bench:  also wrk, the load generator.
set -euo pipefail
what=${1:-system}

is_root() { [ "$(id -u)" = 0 ]; }
apt_updated=0
apt_install() {
    if ! is_root; then
        echo "intake: missing $*; install it with: sudo apt-get install -y $*" >&2
        return 1
    fi
    if [ "$apt_updated" = 0 ]; then
        apt-get update -qq >/dev/null
        apt_updated=1
    fi
    echo "intake: installing $* from Debian's packages" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

python_ok() {
    "${PYTHON:-python3}" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

if ! python_ok; then
    echo "intake: needs Python 3.11+ with venv; on Debian: apt-get install python3 python3-venv" >&2
    if is_root && command -v apt-get >/dev/null; then apt_install python3-venv; else exit 1; fi
fi
command -v redis-server >/dev/null || apt_install redis-server

if [ "$what" = test ] || [ "$what" = bench ]; then
    command -v chromium >/dev/null || [ -x /usr/bin/chromium ] || apt_install chromium
    # axe-core for the browser tests' accessibility check, pinned by tests/browser/package-lock.json.
    browser_tests="$(cd "$(dirname "$0")/.." && pwd)/tests/browser"
    if [ ! -d "$browser_tests/node_modules/axe-core" ]; then
        command -v npm >/dev/null || apt_install npm
        npm ci --prefix "$browser_tests" --silent --no-audit --no-fund >/dev/null
    fi
    # PostgreSQL: start the local cluster when it is installed but stopped. In CI it is required.
    if command -v pg_lsclusters >/dev/null; then
        if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
            for version in $(ls /etc/postgresql 2>/dev/null); do
                pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
            done
        fi
    elif [ "${CI:-}" = true ]; then
        apt_install postgresql
        for version in $(ls /etc/postgresql); do
            pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
        done
    fi
    if [ "${CI:-}" = true ] && command -v psql >/dev/null; then
        for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
        # Trust auth for loopback and a `test` database, as on the developers' machines.
        if ! psql -h 127.0.0.1 -U postgres -d test -c 'select 1' >/dev/null 2>&1 && is_root; then
            su postgres -c "psql -c 'create database test'" >/dev/null 2>&1 || true
        fi
    fi
fi
if [ "$what" = bench ] || [ "$what" = test ]; then
    command -v wrk >/dev/null || apt_install wrk
fi
exit 0
