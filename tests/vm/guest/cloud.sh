#!/bin/bash
# The runner of tests/vm/test_cloud_vm.py, inside a self-contained guest (a
# cloud kernel has no 9p: the root, this script, the module and the case
# programs came in the initramfs; tests/qemu_guest.py SelfContained).  $1
# is the run directory, written back to the host as a tar archive after the
# run; plan.env: KO, CASES, CASEBIN.  Each step: tests/guest/steps.sh.
run=$1
# shellcheck source=/dev/null
. "$run/plan.env"
# shellcheck source=tests/guest/steps.sh
. "$run/steps.sh"
export HOME=/tmp LANG=C PATH=/usr/sbin:/usr/bin:/sbin:/bin
uname -r > "$run/uname"
cat /proc/cmdline > "$run/cmdline"
# vmlinux symbols only: the host compares the module's addresses with them.
grep -v '\[' /proc/kallsyms > "$run/kallsyms"
# symbols=map: the build-time symbols only, the kprobe path switched off.
step load 120 insmod "$KO" symbols=map
step symbols 10 cat /sys/kernel/debug/esca/symbols
for c in $CASES; do
	step "case-$c" 180 "$CASEBIN/$c"
done
step rmmod 60 rmmod esca
finish
