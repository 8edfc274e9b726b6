# shellcheck shell=bash
# Sourced by every guest runner (tests/vm/guest/run.sh, tests/e2e/guest/
# runner.sh) after `. "$run/plan.env"`: each step marks /dev/kmsg, runs with
# a timeout and keeps its output, exit code, duration and the kernel log
# after the mark in $run/results/NAME.{out,rc,seconds,dmesg}; the host reads
# them back (tests/qemu_guest.py GuestRun.result).
#
#   step NAME SECONDS CMD...   # CMD may be a function of the runner
#   must NAME SECONDS CMD...   # a failure stops the run ($run/aborted)
#   finish                     # keeps the kernel log, marks the run finished
# A function step runs in a fresh bash of the runner (timeout needs a
# program): `runner.sh RUN __call FUNCTION ARGS...`, which the runner handles.
# shellcheck disable=SC2154 # $run: set by the runner
res=$run/results
STEPS_RUNNER=${STEPS_RUNNER:-$(readlink -f "$0")}
mkdir -p "$res"

step() {
	local name=$1 limit=$2 rc t0
	shift 2
	echo "esca-step: begin $name" > /dev/kmsg
	echo "esca-guest: $name"
	t0=$(date +%s)
	if [ "$(type -t "$1")" = function ]; then
		timeout -k 10 "$limit" bash "$STEPS_RUNNER" "$run" __call "$@" > "$res/$name.out" 2>&1
	else
		timeout -k 10 "$limit" "$@" > "$res/$name.out" 2>&1
	fi
	rc=$?
	echo "esca-step: end $name" > /dev/kmsg
	dmesg | awk -v m="esca-step: begin $name" 'index($0, m) { p = 1 } p' > "$res/$name.dmesg"
	echo $(($(date +%s) - t0)) > "$res/$name.seconds"
	echo "$rc" > "$res/$name.rc"
	echo "esca-guest: $name exit $rc ($(cat "$res/$name.seconds") s)"
	return "$rc"
}

must() {
	step "$@" && return 0
	echo "$1" > "$run/aborted"
	finish
}

finish() {
	if [ "$(type -t finish_hook)" = function ]; then
		finish_hook
	fi
	dmesg > "$run/dmesg.txt"
	echo "done" > "$run/finished"
	exit 0
}
