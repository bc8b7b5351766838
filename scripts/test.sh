#!/usr/bin/env bash
# Install everything the tests need on a fresh machine, then run them.
# Used by README.md's test command and by .ci/run. Extra arguments go to pytest
# (bash scripts/test.sh -m slow runs the slow tests; -k, -x, a path... work as usual).
#
# Python packages go into a virtual environment, ./.venv, never into the system's python:
# Debian and Ubuntu refuse system-wide pip installs (PEP 668), and a shared interpreter should
# not have its packages changed by a test run. The environment sees the interpreter's own
# site-packages (--system-site-packages), so whatever is already installed there (CI's image) is
# reused instead of downloaded again. An activated virtual environment ($VIRTUAL_ENV) is used as
# it is. PYTHON picks the interpreter that creates .venv (default: python3).
#
# Debian packages: chromium (the browser tests drive it; Playwright cannot download browsers
# here) and nodejs (the JavaScript client's tests run under node), through apt-get, as root or
# with sudo. Without them those tests are skipped, except under CI=true, where they fail.
#
# Exit status: pytest's own, or 100 when the setup failed before pytest could run.
set -euo pipefail
cd "$(dirname "$0")/.."
trap 'echo "scripts/test.sh: setup failed at line $LINENO" >&2; exit 100' ERR

if [ -n "${VIRTUAL_ENV:-}" ]; then
    venv="$VIRTUAL_ENV"
else
    venv="$PWD/.venv"
    if [ ! -x "$venv/bin/python" ]; then
        python="${PYTHON:-python3}"
        if ! command -v "$python" >/dev/null; then
            echo "scripts/test.sh: $python not found; install Python 3.11 or newer" >&2
            exit 100
        fi
        if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
            echo "scripts/test.sh: $python is $("$python" -V 2>&1); sse-batcher needs Python 3.11 or newer" >&2
            echo "  (set PYTHON=python3.11, for example, to use another interpreter)" >&2
            exit 100
        fi
        if ! "$python" -m venv --system-site-packages "$venv"; then
            rm -rf "$venv"
            echo "scripts/test.sh: could not create $venv; on Debian or Ubuntu: sudo apt-get install python3-venv" >&2
            exit 100
        fi
    fi
fi
py="$venv/bin/python"

"$py" -m pip install --quiet --disable-pip-version-check -e '.[test]'

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
if [ "${#missing[@]}" -gt 0 ]; then
    sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    echo "scripts/test.sh: installing ${missing[*]} with apt-get" >&2
    if ! { "${sudo[@]}" apt-get update -qq &&
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }; then
        echo "scripts/test.sh: could not install ${missing[*]}; the tests that need them will skip (fail under CI)" >&2
    fi
fi

# A private base temp dir for this run: pytest's default (/tmp/pytest-of-$USER/pytest-N) deletes
# all but the newest three, so concurrent runs on one machine remove each other's PostgreSQL.
basetemp=()
case " $* " in
    *" --basetemp"*) ;;
    *) basetemp=(--basetemp "$(mktemp -d "${TMPDIR:-/tmp}/sse-batcher-tests.XXXXXX")") ;;
esac
trap - ERR
set +e
"$py" -m pytest "${basetemp[@]}" "$@"
status=$?
[ "${#basetemp[@]}" -eq 0 ] || rm -rf "${basetemp[1]}"
exit "$status"
