# shellcheck shell=bash
# Sourced by scripts/test and scripts/demo: makes a fresh Debian 12 or 13
# machine ready.  Installs what is missing of the Debian packages listed in
# scripts/deps/*.txt (every release) and scripts/deps/<codename>/*.txt (this
# machine's release, from /etc/os-release), and the kernels of the test
# matrix and the cloud kernel (scripts/kernels, found through apt); creates .venv with the tool
# (Debian's Python: Debian's build tools need it) and puts it first on PATH.
# Run as root, from the repository top.

esca_codename() {
    # shellcheck source=/dev/null
    (. /etc/os-release && echo "${VERSION_CODENAME:-unknown}")
}

esca_require_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "$0: run as root (it installs Debian packages)" >&2
        exit 2
    fi
}

# esca_install_packages [APT-OPTION...] -- NAME...: the missing ones.
esca_install_packages() {
    local opts=() p missing=()
    while [ "$1" != -- ]; do
        opts+=("$1")
        shift
    done
    shift
    for p in "$@"; do
        [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] ||
            missing+=("$p")
    done
    [ "${#missing[@]}" -gt 0 ] || return 0
    echo "$0: installing ${missing[*]}"
    # Two test commands at once (two checkouts sharing a release root):
    # one apt at a time, apt-get update included.
    (
        flock 9
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 \
            --no-install-recommends "${opts[@]}" "${missing[@]}"
    ) 9> /var/lib/apt/esca-setup-env.lock
}

esca_setup_env() {
    local top codename p
    top=$(pwd)
    esca_require_root
    codename=$(esca_codename)
    if [ ! -d "scripts/deps/$codename" ]; then
        local known=(scripts/deps/*/)
        known=("${known[@]#scripts/deps/}")
        echo "$0: this machine runs Debian '$codename'; supported: ${known[*]%/}" >&2
        exit 2
    fi
    export DEBIAN_FRONTEND=noninteractive
    local pkgs
    mapfile -t pkgs < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' \
        scripts/deps/*.txt "scripts/deps/$codename"/*.txt | sort -u)
    esca_install_packages -- "${pkgs[@]}"

    # The kernels of the matrix, and Debian's cloud kernel (its own test,
    # tests/vm/test_cloud_vm.py).  A newer kernel may come from backports,
    # whose other packages apt would not pick by itself.  In a release root
    # (scripts/release-root) nothing boots them with an initramfs of their
    # own: INITRD=No spares building one.
    local kernels=() cloud=() opts=()
    mapfile -t kernels < <(scripts/kernels --packages | tr ' ' '\n')
    [ "${#kernels[@]}" -gt 0 ] || { echo "$0: scripts/kernels found no kernel" >&2; exit 1; }
    mapfile -t cloud < <(scripts/kernels --cloud --packages | tr ' ' '\n')
    [ "${#cloud[@]}" -gt 0 ] || { echo "$0: scripts/kernels found no cloud kernel" >&2; exit 1; }
    kernels+=("${cloud[@]}")
    if [[ "$(apt-cache policy)" == *" $codename-backports/"* ]]; then
        opts+=(-t "$codename-backports")
    fi
    if [ -n "${ESCA_RELEASE_ROOT:-}" ]; then
        export INITRD=No
    fi
    esca_install_packages "${opts[@]}" -- "${kernels[@]}"

    export PATH="/usr/sbin:/usr/bin:/sbin:/bin"
    if [ ! -x .venv/bin/pytest ] || [ pyproject.toml -nt .venv/.stamp ]; then
        # The directory itself may be a mount point (scripts/release-root).
        find .venv -mindepth 1 -delete 2>/dev/null || true
        /usr/bin/python3 -m venv .venv
        .venv/bin/pip install -q --upgrade pip
        .venv/bin/pip install -q -e ".[test]" ruff
        touch .venv/.stamp
    fi
    export PATH="$top/.venv/bin:$PATH"
}
