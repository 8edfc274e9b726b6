#!/bin/bash
# The case runner, inside the guest (chroot of the host's root).  $1 is the
# run directory shared with the host; plan.env there says what to run.
# Each step: mark /dev/kmsg, run with a timeout, keep its output, exit code
# and the kernel log after the mark in results/NAME.{out,rc,dmesg}.
run=$1
# shellcheck source=/dev/null
. "$run/plan.env"
export HOME=/tmp LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PATH=/usr/sbin:/usr/bin:/sbin:/bin
res=$run/results
mkdir -p "$res"
uname -r > "$run/uname"
cat /proc/cmdline > "$run/cmdline"

step() {
	local name=$1 limit=$2 rc
	shift 2
	echo "esca-test: begin $name" > /dev/kmsg
	echo "esca-vm: $name"
	timeout -k 5 "$limit" "$@" > "$res/$name.out" 2>&1
	rc=$?
	echo "esca-test: end $name" > /dev/kmsg
	dmesg | awk -v m="esca-test: begin $name" 'index($0, m) { p = 1 } p' > "$res/$name.dmesg"
	echo "$rc" > "$res/$name.rc"
	echo "esca-vm: $name exit $rc"
}

case $MODE in
full)
	grep -v '\[' /proc/kallsyms > "$run/kallsyms"
	step load 120 insmod "$KO"
	step symbols 10 cat /sys/kernel/debug/esca/symbols
	for c in $CASES; do
		step "case-$c" 180 "$CASEBIN/$c"
	done
	step unload_cycles 300 bash "$run/unload_cycles.sh" "$KO" "$CASEBIN"
	if [ -n "${LIBESCA_TESTS:-}" ]; then
		# The module-backend variants of libesca's tests (the other
		# backends run on the host).
		# shellcheck disable=SC2086  # LIBESCA_TESTS is a list of paths
		step libesca_pytest 900 env ESCA_BACKEND=module \
			"$REPO/.venv/bin/python" -m pytest -p no:cacheprovider -q -rs \
			--rootdir "$REPO" -k "$LIBESCA_SELECT" $LIBESCA_TESTS
	fi
	if [ -n "${MICROBENCH:-}" ]; then
		step microbench 600 bash "$run/microbench.sh"
	fi
	step rmmod 60 rmmod esca
	;;
kaslr)
	step load 120 insmod "$KO"
	step symbols 10 cat /sys/kernel/debug/esca/symbols
	for c in $CASES; do
		step "case-$c" 180 "$CASEBIN/$c"
	done
	step rmmod 60 rmmod esca
	step badmap_refused 60 insmod "$KO_BADMAP" symbols=map
	step badmap_fallback 60 insmod "$KO_BADMAP"
	step badmap_symbols 10 cat /sys/kernel/debug/esca/symbols
	step badmap_rmmod 60 rmmod esca
	;;
esac
dmesg > "$run/dmesg.txt"
echo "done" > "$run/finished"
