#!/bin/bash
# shellcheck disable=SC2317  # the checks are functions called through step/must
# The operator's session, inside the guest (root of the overlay).  $1 is the
# run directory shared with the host; plan.env there says which phase runs.
# Each step: mark /dev/kmsg, run with a timeout, keep its output, exit code
# and the kernel log after the mark in results/NAME.{out,rc,dmesg}.  A failed
# "must" step stops the phase (results/aborted names it); dmesg is kept.
run=$1
# shellcheck source=/dev/null
. "$run/plan.env"
# shellcheck source=tests/guest/steps.sh
. "$run/steps.sh"
export HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive PYTHONDONTWRITEBYTECODE=1
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
state=/root/e2e-state		# on the guest's disk: survives the reboot
mkdir -p "$state"

finish_hook() {
	pkill -TERM -x nginx 2>/dev/null
}

start_udev() {
	# What systemd would have started at boot: udevd, the coldplug trigger.
	/lib/systemd/systemd-udevd --daemon || return 1
	udevadm trigger --action=add && udevadm settle --timeout=120
}

# --- the checks (each prints what it saw; non-zero on a mismatch) ----------------

check_module() {
	local kver=$1 ok=0
	dkms status esca
	if ! dkms status -k "$kver" esca | grep -q ": installed"; then
		echo "FAIL: dkms status has no installed esca for $kver"; ok=1
	fi
	ls -l "/lib/modules/$kver/updates/dkms/" 2>&1
	ls /lib/modules/"$kver"/updates/dkms/esca.ko* >/dev/null 2>&1 ||
		{ echo "FAIL: no esca.ko under /lib/modules/$kver/updates/dkms"; ok=1; }
	modinfo -k "$kver" esca | grep -E '^(filename|version|vermagic)' || ok=1
	# Debian installs no System.map: DKMS's build read the kernel's image.
	grep -h "esca-symbols.sh: symbols of" /var/lib/dkms/esca/*/"$kver"/*/log/make.log 2>&1
	grep -q "symbols of $kver from the image /boot/vmlinuz-$kver" \
		/var/lib/dkms/esca/*/"$kver"/*/log/make.log 2>/dev/null ||
		{ echo "FAIL: DKMS's build for $kver did not read the symbols from its image"; ok=1; }
	return "$ok"
}

check_loaded() {
	local ok=0 want="root:esca 660 character special file" got
	udevadm settle --timeout=60
	[ -d /sys/module/esca ] || { echo "FAIL: module esca is not loaded"; ok=1; }
	cat /sys/module/esca/version 2>/dev/null
	got=$(stat -c '%U:%G %a %F' /dev/esca 2>&1)
	echo "/dev/esca: $got"
	[ "$got" = "$want" ] || { echo "FAIL: /dev/esca is '$got', the udev rule gives '$want'"; ok=1; }
	cat /sys/kernel/debug/esca/symbols 2>/dev/null
	grep -qx "source: image" /sys/kernel/debug/esca/symbols 2>/dev/null ||
		{ echo "FAIL: the module did not load from its build's image symbols"; ok=1; }
	return "$ok"
}

check_gone() {
	# After apt remove: no module file, no DKMS state, no module source.
	local ok=0 left
	left=$(find /lib/modules -name 'esca.ko*' 2>/dev/null)
	[ -z "$left" ] || { echo "FAIL: module files left: $left"; ok=1; }
	[ ! -e /var/lib/dkms/esca ] || { echo "FAIL: /var/lib/dkms/esca left"; ls -lR /var/lib/dkms/esca; ok=1; }
	left=$(ls -d /usr/src/esca-* 2>/dev/null)
	[ -z "$left" ] || { echo "FAIL: module source left: $left"; ok=1; }
	if dkms status esca | grep -q .; then echo "FAIL: dkms status: $(dkms status esca)"; ok=1; fi
	if modinfo esca >/dev/null 2>&1; then echo "FAIL: modinfo still finds esca"; ok=1; fi
	# The loaded module stays until unloaded (documented); it must unload.
	if [ -d /sys/module/esca ]; then
		rmmod esca || { echo "FAIL: rmmod esca"; ok=1; }
	fi
	[ ! -d /sys/module/esca ] || { echo "FAIL: module still loaded"; ok=1; }
	echo "remove check: $ok"
	return "$ok"
}

check_purged() {
	local ok=0 left f
	left=$(dpkg-query -W -f '${Package} ${db:Status-Abbrev}\n' 'esca-*' 'libesca*' 2>/dev/null |
		awk '$2 != "un" && $2 != "pn"')
	[ -z "$left" ] || { echo "FAIL: packages left: $left"; ok=1; }
	if getent group esca; then echo "FAIL: group esca left"; ok=1; fi
	# shellcheck disable=SC2013  # package file lists: one path per line, no spaces
	for f in $(cat "$state"/*.files); do
		if [ -e "$f" ] && [ ! -d "$f" ]; then echo "FAIL: file left: $f"; ok=1; fi
	done
	# Everything the guest ever wrote is in the overlay's upper layer: nothing
	# named esca may remain there (whiteouts, apt's lists and logs aside).
	left=$(cd /run/guest-rw/upper && find . ! -type c \( -name esca -o -name 'esca[-_.]*' \
		-o -name '*[-_.]esca' -o -name '*[-_.]esca[-_.]*' -o -name 'libesca*' \) \
		! -path './var/lib/apt/lists/*' ! -path './var/log/*' ! -path './root/e2e-state*' \
		! -path ./etc/apt/preferences.d/esca)
	[ -z "$left" ] || { echo "FAIL: left in the writable layer: $left"; ok=1; }
	echo "purge check: $ok ($(wc -l < <(cat "$state"/*.files)) package paths checked)"
	return "$ok"
}

prepare() {
	# An offline Debian machine whose apt sources are two local
	# repositories: ESCA's (esca-pkg repo: its suite of this release) and one
	# with the Debian packages it will install (the second kernel).  The host's root is below the
	# overlay: packages the host's own tests left installed (ESCA's, the
	# patched servers) and the second kernel are purged first.
	mkdir -p /etc/apt/sources.list.d.off
	mv /etc/apt/sources.list.d/* /etc/apt/sources.list.d.off/ 2>/dev/null
	cat > /etc/apt/sources.list <<EOS
deb [trusted=yes] file:$ESCA_REPO $CODENAME main
deb [trusted=yes] file:$DEPS_REPO local main
EOS
	cat > /etc/apt/preferences.d/esca <<EOS
Package: *
Pin: release o=ESCA
Pin-Priority: 600
EOS
	# PURGE: names and dpkg-query patterns, expanded here, in the guest's
	# own package database (the host's may change until the boot).
	local present=() patterns
	read -r -a patterns <<< "$PURGE"	# no glob expansion of the patterns
	mapfile -t present < <(dpkg-query -W -f '${Package} ${db:Status-Abbrev}\n' "${patterns[@]}" \
		2>/dev/null | awk '$2 ~ /^[ihr]/ { print $1 }' | sort -u)
	echo "purging: ${present[*]}"
	if [ ${#present[@]} -gt 0 ]; then
		apt-get purge -y -q "${present[@]}" || return 1
	fi
	rm -rf /var/lib/dkms/esca /etc/modules-load.d/esca.conf
	# man-db's trigger re-indexes manual pages: minutes under TCG, and
	# nothing of what is tested (as debconf's man-db/auto-update=false).
	rm -f /var/lib/man-db/auto-update
	apt-get update -q || return 1
	echo "kernels: $(ls /lib/modules)"
	[ ! -e "/lib/modules/$KREL2" ] || { echo "FAIL: $KREL2 still installed"; return 1; }
	! find /lib/modules -name 'esca.ko*' | grep . || { echo "FAIL: esca.ko left"; return 1; }
	# A group esca with members outlives the purge (docs/packaging.md): the
	# host's administrator (or a run stopped halfway) put users into it.
	# Taken away in this guest's writable layer only, as the operator would.
	if getent group esca; then
		echo "group esca of the host (with members) taken away for this guest"
		groupdel esca || { echo "FAIL: groupdel esca"; return 1; }
	fi
}

install_esca() {
	# The operator's install: this release's builds (dist/<codename>).
	# Without Recommends: esca-tools recommends python3-matplotlib (esca-bench's
	# plots), whose scientific stack takes over half an hour to byte-compile
	# under TCG; the root has wrk and linux-perf the measurement step uses.
	cd "$ESCA_DEBS" || return 1
	apt-get install -y -q --no-install-recommends \
		./esca-dkms_*.deb ./libesca0_*.deb ./esca-tools_*.deb nginx || return 1
	apt-cache policy nginx
	dpkg-query -W nginx nginx-common esca-dkms libesca0 esca-tools || return 1
	local p
	for p in esca-dkms libesca0 esca-tools; do
		dpkg-query -L "$p" > "$state/$p.files"
	done
}

serve() {
	python3 "$run/serve_check.py" --repo "$REPO" --out "$run/$1.json" "${@:2}"
}

install_kernel2() {
	# No dkms command: the kernel packages' hooks must build the module.
	# INITRD=No (the kernel packages' convention for "needs no initramfs"):
	# the guest boots with the test's own initramfs, and mkinitramfs takes
	# over ten minutes under TCG.  The dkms hook runs either way.
	# shellcheck disable=SC2086  # a list of package names
	INITRD=No apt-get install -y -q $KERNEL2_PKGS || return 1
	cp "/boot/vmlinuz-$KREL2" "$run/vmlinuz-$KREL2"
	check_module "$KREL2"
}

if [ "${2:-}" = __call ]; then
	shift 2
	"$@"
	exit
fi

uname -r > "$run/uname"
echo "e2e: phase $PHASE on $(uname -r)"

case $PHASE in
first)
	must prepare 1200 prepare
	must udev 300 start_udev
	must install 1800 install_esca
	# dkms 3.2 (Debian 13) takes over a minute per `dkms status` under a loaded TCG
	must module 300 check_module "$KREL1"
	must loaded 60 check_loaded
	# nginx's workers run as www-data: not in group esca yet, so esca-run
	# refuses the module backend (the test checks the message) ...
	step refused 60 esca-run nginx --backend module -- -t
	# ... until the operator adds it.
	must adduser 60 adduser www-data esca
	must serve-1w 900 serve "serve-$KREL1-1w" --workers 1 --backend module
	must serve-2w 900 serve "serve-$KREL1-2w" --workers 2 --backend module
	step syscalls 900 serve "syscalls-$KREL1" --measure
	must kernel2 2400 install_kernel2
	;;
second)
	must boot 300 start_udev
	# What systemd-modules-load.service does at boot (modules-load.d).
	must modules-load 120 /lib/systemd/systemd-modules-load
	must module 300 check_module "$KREL2"
	must loaded 60 check_loaded
	must serve-1w 900 serve "serve-$KREL2-1w" --workers 1 --backend module
	must serve-2w 900 serve "serve-$KREL2-2w" --workers 2 --backend module
	step syscalls 900 serve "syscalls-$KREL2" --measure
	must remove 1200 apt-get remove -y -q esca-dkms libesca0 esca-tools
	must removed 120 check_gone
	# The operator takes back their own change first: purge deletes the
	# group esca only when it has no members (docs/packaging.md).  gpasswd,
	# not deluser: trixie's adduser 3.152 refuses "deluser www-data esca"
	# ("invalid characters in input string": the hyphen).
	must deluser 60 gpasswd --delete www-data esca
	must purge 600 apt-get purge -y -q esca-dkms libesca0 esca-tools
	must purged 300 check_purged
	;;
esac
finish
