# shellcheck shell=bash
# Sourced by scripts/test and scripts/demo: makes a fresh Debian 12 machine
# ready.  Installs the Debian packages listed in scripts/deps/*.txt that are
# missing, creates .venv with the tool (Debian's Python: Debian's build tools
# need it) and puts it first on PATH.  Run as root, from the repository top.

esca_setup_env() {
    local top p
    top=$(pwd)
    if [ "$(id -u)" != 0 ]; then
        echo "$0: run as root (it installs Debian packages)" >&2
        exit 2
    fi
    export DEBIAN_FRONTEND=noninteractive
    local pkgs missing=()
    mapfile -t pkgs < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' scripts/deps/*.txt | sort -u)
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "$0: installing ${missing[*]}"
        apt-get update -q
        apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}"
    fi

    export PATH="/usr/sbin:/usr/bin:/sbin:/bin"
    if [ ! -x .venv/bin/pytest ] || [ pyproject.toml -nt .venv/.stamp ]; then
        rm -rf .venv
        /usr/bin/python3 -m venv .venv
        .venv/bin/pip install -q --upgrade pip
        .venv/bin/pip install -q -e ".[test]" ruff
        touch .venv/.stamp
    fi
    export PATH="$top/.venv/bin:$PATH"
}
