#!/bin/bash
# The case runner, inside the guest (chroot of the shared root).  $1 is the
# run directory shared with the host; plan.env there says what to run.  Each
# step (tests/guest/steps.sh): mark /dev/kmsg, run with a timeout, keep its
# output, exit code and the kernel log after the mark in results/.
run=$1
# shellcheck source=/dev/null
. "$run/plan.env"
# shellcheck source=tests/guest/steps.sh
. "$run/steps.sh"
export HOME=/tmp LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PATH=/usr/sbin:/usr/bin:/sbin:/bin
uname -r > "$run/uname"
cat /proc/cmdline > "$run/cmdline"

case $MODE in
full)
	grep -v '\[' /proc/kallsyms > "$run/kallsyms"
	# symbols=map: the build's symbols (from the image) or no load.
	step load 120 insmod "$KO" symbols=map
	step symbols 10 cat /sys/kernel/debug/esca/symbols
	for c in $CASES; do
		step "case-$c" 180 "$CASEBIN/$c"
	done
	step unload_cycles 300 bash "$run/unload_cycles.sh" "$KO" "$CASEBIN"
	if [ -n "${LIBESCA_TESTS:-}" ]; then
		# The module-backend variants of libesca's tests (the other
		# backends run on the host).  -rfE, not -rs: the host shows the
		# output's tail, where a failure's message must not give way to
		# the list of skipped tests.
		read -ra tests <<< "$LIBESCA_TESTS"
		step libesca_pytest 900 env ESCA_BACKEND=module \
			"$REPO/.venv/bin/python" -m pytest -p no:cacheprovider -q -rfE \
			--rootdir "$REPO" -k "$LIBESCA_SELECT" "${tests[@]}"
	fi
	if [ -n "${MICROBENCH:-}" ]; then
		step microbench 600 bash "$run/microbench.sh"
	fi
	# What udev, strace, perf, a seccomp filter, a signal and audit see of
	# ESCA (audit last: once enabled, it stays so for the boot).
	for check in ${OBSERVE:-}; do
		step "observe-$check" 300 bash "$REPO/tests/vm/guest/observe.sh" "$run" "$check"
	done
	step rmmod 60 rmmod esca
	;;
kaslr)
	grep -v '\[' /proc/kallsyms > "$run/kallsyms"
	step load 120 insmod "$KO" symbols=map
	step symbols 10 cat /sys/kernel/debug/esca/symbols
	for c in $CASES; do
		step "case-$c" 180 "$CASEBIN/$c"
	done
	step rmmod 60 rmmod esca
	step map_load 60 insmod "$KO_MAP" symbols=map
	step map_symbols 10 cat /sys/kernel/debug/esca/symbols
	step map_rmmod 60 rmmod esca
	step badmap_refused 60 insmod "$KO_BADMAP" symbols=map
	if step badmap_fallback 60 insmod "$KO_BADMAP"; then
		step badmap_symbols 10 cat /sys/kernel/debug/esca/symbols
		step badmap_rmmod 60 rmmod esca
	fi
	if [ -n "$KO_KPROBE" ]; then
		step kprobe_load 60 insmod "$KO_KPROBE"
		step kprobe_symbols 10 cat /sys/kernel/debug/esca/symbols
		step kprobe_rmmod 60 rmmod esca
	fi
	;;
esac
finish
