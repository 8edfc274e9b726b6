#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# esca-symbols.sh KERNELRELEASE ABI_HEADER OUTPUT
#
# Writes OUTPUT (generated/esca_symbols.h): the link-time addresses of
# sys_call_table, of kfree (the KASLR anchor) and of the __x64_sys_* handler
# of every call of the ABI header's allowlist and waits, for the kernel
# KERNELRELEASE, from the first of:
#
#  1. a real System.map: $ESCA_SYSTEM_MAP (a path; "none" skips maps), else
#     /lib/modules/$v/System.map, /boot/System.map-$v,
#     /usr/lib/debug/boot/System.map-$v (Debian's one-line stub is skipped);
#  2. the kernel's own image: $ESCA_KERNEL_IMAGE (a path; "none" skips
#     images), else /boot/vmlinuz-$v, /usr/lib/modules/$v/vmlinuz,
#     /lib/modules/$v/vmlinuz.  esca_image_symbols.py reads its kallsyms,
#     cross-checks every export and the syscall table's slots, and refuses
#     what an IBT kernel seals; any failure fails the build;
#  3. neither: the module resolves symbols at load time through a kprobe on
#     kallsyms_lookup_name -- unless the kernel is built with
#     CONFIG_X86_KERNEL_IBT ($ESCA_IBT=y), which seals that function's
#     ENDBR64 at boot: then the build fails, naming the fix.
#
# Runs from the module's Kbuild: its failure fails the build.
set -eu

die() {
	echo "esca-symbols.sh: error: $*" >&2
	exit 1
}
note() {
	echo "esca-symbols.sh: $*" >&2
}

[ $# -eq 3 ] || die "usage: esca-symbols.sh KERNELRELEASE ABI_HEADER OUTPUT"
kver=$1
abi=$2
out=$3
here=$(dirname "$0")
[ -n "$kver" ] || die "empty kernel release"
[ -r "$abi" ] || die "cannot read the ABI header $abi"

# "nr name" of every X(nr, name) of the header (allowlist and waits).
calls=$(sed -n 's/^[[:space:]]*X([[:space:]]*\([0-9][0-9]*\),[[:space:]]*\([a-z0-9_]*\)).*/\1 \2/p' "$abi")
[ -n "$calls" ] || die "no ESCA_ALLOWED_SYSCALLS entries found in $abi"
names=$(echo "$calls" | awk '{ print $2 }')
# The handler of a call, as arch/x86/entry/syscalls/syscall_64.tbl names
# it (the module's esca_handler_aliases[] knows the same exceptions).
handler() {
	case $1 in
	sendfile) echo __x64_sys_sendfile64 ;;
	*) echo "__x64_sys_$1" ;;
	esac
}
# What a map must have; for the image reader also each handler's slot
# (handler@nr: it checks that slot nr of the table holds that handler).
wanted="kfree sys_call_table"
slots=
while read -r nr n; do
	wanted="$wanted $(handler "$n")"
	slots="$slots $(handler "$n")@$nr"
done <<EOF
$calls
EOF

# Prints the "name address" lines of the wanted symbols; fails unless the
# map has all of them exactly once.
read_map() {
	awk -v wanted="$wanted" '
		BEGIN { n = split(wanted, w, " "); for (i = 1; i <= n; i++) want[w[i]] = 1 }
		NF >= 3 && ($3 in want) {
			if ($1 !~ /^[0-9a-fA-F]+$/ || length($1) != 16) { bad = 1; exit 1 }
			if ($3 in addr && addr[$3] != $1) { bad = 1; exit 1 }
			addr[$3] = $1
		}
		END {
			if (bad) exit 1
			for (i = 1; i <= n; i++) if (!(w[i] in addr)) { print "missing " w[i] > "/dev/stderr"; exit 1 }
			for (i = 1; i <= n; i++) print w[i], addr[w[i]]
		}' "$1"
}

source=
file=
found=
mkdir -p "$(dirname "$out")"
tmpmap="$out.map.$$"
trap 'rm -f "$tmpmap"' EXIT

# 1. A real System.map.
if [ "${ESCA_SYSTEM_MAP:-}" != none ]; then
	if [ -n "${ESCA_SYSTEM_MAP:-}" ]; then
		[ -r "$ESCA_SYSTEM_MAP" ] || die "ESCA_SYSTEM_MAP=$ESCA_SYSTEM_MAP is not readable"
		set -- "$ESCA_SYSTEM_MAP"
	else
		set -- "/lib/modules/$kver/System.map" "/boot/System.map-$kver" \
			"/usr/lib/debug/boot/System.map-$kver"
	fi
	for candidate in "$@"; do
		[ -r "$candidate" ] || continue
		if [ "$(head -n 2 "$candidate" | wc -l)" -le 1 ]; then
			note "skipping $candidate: a one-line stub, not a real System.map"
			continue
		fi
		if found=$(read_map "$candidate" 2>/dev/null); then
			source=system-map
			file=$candidate
			break
		fi
		note "skipping $candidate: lacks sys_call_table, kfree or an __x64_sys_* handler"
	done
	if [ -z "$source" ] && [ -n "${ESCA_SYSTEM_MAP:-}" ]; then
		die "ESCA_SYSTEM_MAP=$ESCA_SYSTEM_MAP is not a usable System.map"
	fi
fi

# 2. The kernel's own image.
if [ -z "$source" ] && [ "${ESCA_KERNEL_IMAGE:-}" != none ]; then
	if [ -n "${ESCA_KERNEL_IMAGE:-}" ]; then
		[ -r "$ESCA_KERNEL_IMAGE" ] || die "ESCA_KERNEL_IMAGE=$ESCA_KERNEL_IMAGE is not readable"
		set -- "$ESCA_KERNEL_IMAGE"
	else
		set -- "/boot/vmlinuz-$kver" "/usr/lib/modules/$kver/vmlinuz" "/lib/modules/$kver/vmlinuz"
	fi
	for candidate in "$@"; do
		[ -r "$candidate" ] || continue
		command -v python3 > /dev/null ||
			die "python3 is needed to read the symbols of $candidate: apt-get install python3"
		# shellcheck disable=SC2086 # word splitting of the symbol lists is meant
		python3 "$here/esca_image_symbols.py" --stats "$candidate" kfree sys_call_table $slots > "$tmpmap" ||
			die "the symbols of $candidate cannot be trusted (above); set ESCA_SYSTEM_MAP to a real System.map of $kver"
		found=$(read_map "$tmpmap") || die "esca_image_symbols.py gave an incomplete map for $candidate"
		source=image
		file=$candidate
		break
	done
fi

# 3. Neither: the kprobe path, where it can work.
if [ -z "$source" ]; then
	if [ "${ESCA_IBT:-}" = y ]; then
		die "no System.map and no readable image of $kver, and $kver is built with" \
			"CONFIG_X86_KERNEL_IBT, where the load-time kprobe path cannot work:" \
			"install linux-image-$kver (its /boot/vmlinuz-$kver) or set ESCA_SYSTEM_MAP"
	fi
	note "no System.map and no image of $kver (ESCA_SYSTEM_MAP=${ESCA_SYSTEM_MAP:-}," \
		"ESCA_KERNEL_IMAGE=${ESCA_KERNEL_IMAGE:-}): the module will use the kprobe path"
else
	note "symbols of $kver from the $source $file"
fi

tmp="$out.tmp.$$"
trap 'rm -f "$tmp" "$tmpmap"' EXIT
{
	echo "/* Generated by esca-symbols.sh for $kver: do not edit. */"
	echo "#define ESCA_SYMBOLS_FORMAT 2"
	echo "#define ESCA_SYMBOLS_RELEASE \"$kver\""
	if [ -n "$source" ]; then
		echo "#define ESCA_SYMBOLS_HAVE_MAP 1"
		echo "#define ESCA_SYMBOLS_SOURCE \"$source\""
		echo "#define ESCA_SYMBOLS_FILE \"$file\""
		echo "$found" | while read -r sym addr; do
			case $sym in
			kfree | sys_call_table) echo "#define ESCA_MAP_$sym 0x${addr}UL" ;;
			esac
		done
		for n in $names; do
			h=$(handler "$n")
			addr=$(echo "$found" | awk -v s="$h" '$1 == s { print $2 }')
			echo "#define ESCA_MAP_HANDLER_$n 0x${addr}UL /* $h */"
		done
	else
		echo "#define ESCA_SYMBOLS_HAVE_MAP 0"
		echo "#define ESCA_SYMBOLS_SOURCE \"none\""
		echo "#define ESCA_SYMBOLS_FILE \"none\""
	fi
	echo "#define ESCA_SYMBOLS_COMPLETE 1"
} > "$tmp"
if [ -f "$out" ] && cmp -s "$tmp" "$out"; then
	rm -f "$tmp"
else
	mv -f "$tmp" "$out"
fi
