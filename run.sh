#!/usr/bin/env bash
# mimamori developer entry point.
#   ./run.sh demo [ARGS]   local broker + hub + simulated devices; prints the URL to open
#   ./run.sh test [ARGS]   lint, type checks and the tests, three at a time (ARGS go to pytest;
#                          -m 'browser or slow' and -m soak -n 0 run the long suites the
#                          default leaves out; MIMAMORI_TEST_WORKERS=N sets how many at a time)
# Both install what they need first: Debian packages (mosquitto, and gcc with Mosquitto's
# headers for the broker's guard plugin; postgresql, chromium and coturn for the tests), a
# virtualenv in .venv and the Python dependencies.
set -euo pipefail
cd "$(dirname "$0")"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

apt_install() {
    local missing=()
    for spec in "$@"; do
        local pkg=${spec%%:*} probe=${spec#*:}
        [ -e "$probe" ] || command -v "$probe" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
            echo "error: need Debian packages: ${missing[*]}; install them as root:" >&2
            echo "  apt-get install -y ${missing[*]}" >&2
            exit 1
        fi
    fi
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! "${sudo[@]}" apt-get install -y -q "${missing[@]}" >/dev/null 2>&1; then
        "${sudo[@]}" apt-get update -q >/dev/null
        "${sudo[@]}" apt-get install -y -q "${missing[@]}" >/dev/null || {
            echo "error: could not install ${missing[*]} with apt-get" >&2; exit 1; }
    fi
}

venv() {
    local extra=$1
    if [ ! -x .venv/bin/python ]; then
        python3 -m venv .venv 2>/dev/null || {
            apt_install python3-venv:/usr/share/doc/python3-venv
            rm -rf .venv && python3 -m venv .venv; }
    fi
    local stamp=".venv/.installed-$extra"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        say "installing Python dependencies into .venv"
        .venv/bin/python -m pip install -q --upgrade pip
        .venv/bin/python -m pip install -q -e ".[$extra]"
        touch "$stamp"
    fi
    # mypy reads the import root as installed (mimamori.edge, ...) through these links
    mkdir -p .venv/import-root/mimamori
    local pkg
    for pkg in edge hub kiosk provisioning models; do
        ln -sfn "../../../$pkg" ".venv/import-root/mimamori/$pkg"
    done
}

# the broker guard plugin (provisioning/guard.py) is compiled against Mosquitto's headers
BROKER_BUILD="gcc:gcc mosquitto-dev:/usr/include/mosquitto_broker.h libmosquitto-dev:/usr/include/mosquitto.h"

cmd=${1:-}
shift || true
case "$cmd" in
    demo)
        # the pages are in Japanese: a browser on this machine needs a Japanese font
        apt_install mosquitto:/usr/sbin/mosquitto $BROKER_BUILD \
            fonts-noto-cjk:/usr/share/fonts/opentype/noto
        venv postgres
        exec .venv/bin/mimamori demo "$@"
        ;;
    test)
        apt_install mosquitto:/usr/sbin/mosquitto $BROKER_BUILD mosquitto-clients:mosquitto_pub \
            postgresql:/usr/lib/postgresql systemd:systemd-analyze mtools:mcopy \
            dosfstools:/usr/sbin/mkfs.vfat fdisk:/usr/sbin/sfdisk cloud-init:cloud-init \
            chromium:/usr/lib/chromium/chromium fonts-noto-cjk:/usr/share/fonts/opentype/noto \
            coturn:/usr/bin/turnserver
        venv test
        say "ruff"
        .venv/bin/ruff check .
        .venv/bin/ruff format --check .
        say "mypy"
        .venv/bin/mypy
        say "pytest"
        set +e
        # most tests wait on a broker, a socket or a subprocess, so three run at once on two
        # cores (pytest-xdist; a module marked xdist_group stays on one worker); a later -n in
        # ARGS wins (-n 0: one at a time, for timings)
        .venv/bin/python -m pytest -n "${MIMAMORI_TEST_WORKERS:-3}" --dist loadgroup "$@"
        rc=$?
        set -e
        if [ $rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi
        exit $rc
        ;;
    *)
        [ -n "$cmd" ] && echo "error: unknown command '$cmd' (expected demo or test)" >&2
        sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
