#!/bin/bash
# Load/unload cycles: rmmod must fail while contexts are open (the module
# stays usable), and succeed once their process died, with nothing pinned.
# Usage: unload_cycles.sh KO CASEBIN   (the module is loaded on entry and exit)
set -eu
ko=$1 bin=$2
d=/sys/kernel/debug/esca
fail() { echo "unload_cycles: $*"; exit 1; }
expect() {
	local _i
	for _i in $(seq 100); do
		[ "$(cat "$d/$1")" = "$2" ] && return 0
		sleep 0.05
	done
	fail "$1 is $(cat "$d/$1"), expected $2"
}

rmmod esca
for cycle in 1 2 3; do
	insmod "$ko"
	expect pinned_pages 0
	# 3 contexts with 128-entry tables: 3 pages each.
	coproc HOLDER { exec "$bin/holder" 3; }
	read -r line <&"${HOLDER[0]}"
	[ "$line" = ready ] || fail "holder said '$line'"
	expect contexts 3
	expect pinned_pages 9
	if rmmod esca 2>/dev/null; then
		fail "rmmod succeeded with contexts open"
	fi
	[ -c /dev/esca ] || fail "/dev/esca gone after a refused rmmod"
	kill -9 "$HOLDER_PID"
	wait "$HOLDER_PID" || true
	expect contexts 0
	expect pinned_pages 0
	rmmod esca
	[ ! -e /dev/esca ] || fail "/dev/esca still there after rmmod"
	[ ! -e "$d" ] || fail "debugfs directory left after rmmod"
	echo "cycle $cycle ok"
done
# Load and unload with nothing open, quickly.
for cycle in $(seq 10); do
	insmod "$ko"
	rmmod esca
done
insmod "$ko"
echo "unload cycles ok"
