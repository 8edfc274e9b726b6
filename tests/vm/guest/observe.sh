#!/bin/bash
# What an administrator's tools see of ESCA, in the guest (the module is
# loaded on entry and on exit):
#   devmode  /dev/esca is 0600 root:root from the module (no udev), and
#            root:esca 0660 with the package's udev rule; a uid outside the
#            group gets EACCES either way
#   strace   strace -f of a hooked program lists every call it deferred
#            (sendto: libesca sends what write() and send() gave it)
#   audit    with an audit rule on sendto, the module refuses, every call
#            runs once and has its audit record in the kernel log; a rule
#            added while a call of a flush sleeps applies to the calls after
#            it (tests/vm/cases/programs/h_audit_rule.c)
#   perf     perf stat -e 'esca:*' counts exactly the calls libesca deferred
#   tsync    a seccomp filter (TSYNC) arriving mid-flush stops the forbidden
#            entries (tests/vm/cases/programs/h_tsync.c)
#   signal   a signal during a long flush runs its handler before the rest
#            (tests/vm/cases/programs/h_signal.c)
#   lost     a write whose result the module could not write back (the
#            table made read-only mid-flush) is not run again, its
#            connection is reset (tests/vm/cases/programs/h_lost.c)
# Usage: observe.sh RUNDIR CHECK
set -eu
run=$1 check=$2
# shellcheck source=/dev/null
. "$run/plan.env"
lib=$REPO/libesca/build/libesca.so.0
work=$(mktemp -d /tmp/observe.XXXXXX)
fail() { echo "observe $check: $*"; exit 1; }

# perf counts system-wide (-a), the guest runs nothing else: events bound to
# a task make the kernel switch its perf_sched_events static key, patching
# __schedule() with int3 while the other vCPU runs it, and QEMU TCG has
# oopsed on that ("Oops: int3" in __schedule, 6.12 guest).

# The hooked programs run with libesca preloaded, every segment batched.
hooked=(env "LD_PRELOAD=$lib" ESCA_BACKEND=module ESCA_ADAPT=0 ESCA_STATS=1)

# The ESCA_STATS=1 counter NAME from a program's stderr.
stat_of() {
	sed -n "s/^esca: pid=.* $2=\([0-9]*\).*/\1/p" "$1"
}

# h_writes FILE SEGMENTS WRITES wrote lines 000000 .. WRITES*SEGMENTS-1, once each.
check_lines() {
	seq -f '%06g' 0 $(($2 - 1)) > "$work/expected"
	cmp -s "$1" "$work/expected" || fail "$1 is not the $2 lines, once each and in order"
}

# Count of EVENT in a perf stat -x, output file.
perf_count() {
	awk -F, -v e="$2" '$3 == e { print $1 }' "$1"
}

mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing

case $check in
devmode)
	rmmod esca
	insmod "$KO"
	mode=$(stat -c '%a %U %G' /dev/esca)
	[ "$mode" = "600 root root" ] || fail "/dev/esca is '$mode' right after insmod, not '600 root root'"
	open_as() {
		setpriv --reuid="$1" --regid="$1" --groups="$2" /usr/bin/python3 -c '
import os
try:
    os.close(os.open("/dev/esca", os.O_RDWR))
    print("ok")
except OSError as e:
    print(os.strerror(e.errno))'
	}
	# A group esca of our own: the host's /etc/group (read-only here) may
	# gain or lose one while we run (the packaging suite adds and purges it).
	gid=4242
	grep -v '^esca:' /etc/group > "$work/group"
	echo "esca:x:$gid:" >> "$work/group"
	mount --bind "$work/group" /etc/group
	[ "$(open_as 4243 "$gid")" = "Permission denied" ] ||
		fail "a member of esca opened /dev/esca without udev's rule"
	[ "$(open_as 65534 65534)" = "Permission denied" ] || fail "a non-member opened /dev/esca"
	# The package's rule, applied by udevd as the package installs it.
	mkdir -p /run/udev/rules.d
	cp "$REPO/debian/esca-dkms.udev" /run/udev/rules.d/60-esca-dkms.rules
	# The runner is a chroot: without this, udevadm settle and control
	# return at once ("Running in chroot, ignoring request").
	export SYSTEMD_IGNORE_CHROOT=1
	/lib/systemd/systemd-udevd --daemon
	rmmod esca
	insmod "$KO"
	udevadm settle -t 60
	mode=$(stat -c '%a %U %G' /dev/esca)
	udevadm control --exit
	for _ in $(seq 50); do
		pidof systemd-udevd > /dev/null || break
		sleep 0.1
	done
	pidof systemd-udevd > /dev/null && fail "systemd-udevd did not exit"
	rm -f /run/udev/rules.d/60-esca-dkms.rules
	umount /etc/group
	[ "$mode" = "660 root esca" ] || fail "with udev's rule /dev/esca is '$mode', not '660 root esca'"
	[ "$(open_as 65534 65534)" = "Permission denied" ] ||
		fail "a non-member opened /dev/esca with the rule"
	[ "$(open_as 4243 "$gid")" = ok ] || fail "a member of esca cannot open /dev/esca"
	echo "devmode ok: 0600 root:root from the module, 0660 root:esca with the rule"
	;;
strace)
	strace -f -qq -e trace=write,sendto -e signal=none -o "$work/strace" \
		"${hooked[@]}" "$CASEBIN/h_writes" "$work/data" 20 8 2> "$work/stderr" ||
		fail "h_writes under strace: $(cat "$work/stderr")"
	check_lines "$work/data" 160
	grep -q "backend=module" "$work/stderr" || fail "libesca did not use the module: $(cat "$work/stderr")"
	[ "$(stat_of "$work/stderr" kernel_entries)" -ge 20 ] || fail "no FLUSH was made: $(cat "$work/stderr")"
	n=$(grep -c 'sendto(77, "' "$work/strace" || true)
	[ "$n" = 160 ] || fail "strace lists $n of the 160 writes"
	echo "strace -f lists all $n deferred writes"
	;;
lost)
	"${hooked[@]}" "$CASEBIN/h_lost" > "$work/out" 2> "$work/stderr" ||
		fail "h_lost: $(cat "$work/out" "$work/stderr")"
	grep -q "backend=module" "$work/stderr" || fail "libesca did not use the module: $(cat "$work/stderr")"
	grep -q "could not write its result back" "$work/stderr" ||
		fail "libesca did not say the result was lost: $(cat "$work/stderr")"
	cat "$work/out"
	;;
audit)
	sysctl -q kernel.printk_ratelimit=0
	auditctl -D > /dev/null
	auditctl -b 8192 > /dev/null
	auditctl -e 1 > /dev/null
	auditctl -a always,exit -F arch=b64 -S sendto -F a0=77 -k esca_observe > /dev/null
	echo "observe: audit begins" > /dev/kmsg
	perf stat -a -x, -o "$work/perf" -e esca:esca_call,esca:esca_refused -- \
		"${hooked[@]}" "$CASEBIN/h_writes" "$work/data" 20 8 2> "$work/stderr" || rc=$?
	auditctl -D > /dev/null
	# A rule added while a call of a flush sleeps (issue 21, N4).
	"$CASEBIN/h_audit_rule" > "$work/mid" 2>&1 || rc_mid=$?
	auditctl -D > /dev/null
	auditctl -e 0 > /dev/null
	[ "${rc_mid:-0}" = 0 ] || fail "h_audit_rule: $(cat "$work/mid")"
	cat "$work/mid"
	[ "${rc:-0}" = 0 ] || fail "h_writes under audit: $(cat "$work/stderr")"
	check_lines "$work/data" 160
	grep -q "backend=module" "$work/stderr" || fail "libesca did not use the module"
	sleep 1
	records=$(dmesg | awk '/observe: audit begins/ { p = 1 } p' |
		grep 'type=1300' | grep -c 'key="esca_observe"' || true)
	[ "$records" = 160 ] || fail "$records audit records for 160 writes"
	refused=$(perf_count "$work/perf" esca:esca_refused)
	calls=$(perf_count "$work/perf" esca:esca_call)
	[ "$calls" = 0 ] || fail "$calls writes ran inside the module under audit rules"
	[ "$refused" -ge 20 ] || fail "the module refused $refused entries, expected one per flush"
	# Audit off again: a thread's audit context stays, but records nothing;
	# the module must not refuse (it did, before it looked at audit_enabled).
	perf stat -a -x, -o "$work/perf" -e esca:esca_call,esca:esca_refused -- \
		"${hooked[@]}" "$CASEBIN/h_writes" "$work/data" 20 8 2> "$work/stderr" ||
		fail "h_writes after audit: $(cat "$work/stderr")"
	after=$(perf_count "$work/perf" esca:esca_call)
	[ "$after" = 160 ] || fail "with audit off again, $after of 160 writes ran in the module"
	echo "audit: $records records for 160 writes; the module refused $refused entries;"
	echo "audit off again: all $after writes ran in the module"
	;;
perf)
	perf stat -a -x, -o "$work/perf" -e esca:esca_flush,esca:esca_call,esca:esca_refused -- \
		"${hooked[@]}" "$CASEBIN/h_writes" "$work/data" 25 8 2> "$work/stderr" ||
		fail "h_writes under perf: $(cat "$work/stderr") $(cat "$work/perf")"
	check_lines "$work/data" 200
	cat "$work/perf"
	deferred=$(stat_of "$work/stderr" deferred)
	calls=$(perf_count "$work/perf" esca:esca_call)
	flushes=$(perf_count "$work/perf" esca:esca_flush)
	[ "$deferred" = 200 ] || fail "libesca deferred $deferred of the 200 writes"
	[ "$calls" = "$deferred" ] || fail "esca:esca_call counted $calls, libesca deferred $deferred"
	[ "$flushes" = 25 ] || fail "esca:esca_flush counted $flushes for 25 segments"
	[ "$(perf_count "$work/perf" esca:esca_refused)" = 0 ] || fail "entries refused"
	echo "perf stat: esca:esca_call $calls = deferred $deferred, esca:esca_flush $flushes"
	perf trace -a -o "$work/trace" -e esca:esca_call -- \
		"${hooked[@]}" "$CASEBIN/h_writes" "$work/data" 5 8 2> "$work/stderr" ||
		fail "h_writes under perf trace: $(cat "$work/stderr")"
	n=$(grep -c 'esca:esca_call' "$work/trace" || true)
	[ "$n" = 40 ] || fail "perf trace shows $n of 40 writes: $(head -5 "$work/trace")"
	echo "perf trace: all $n writes, e.g. $(head -1 "$work/trace")"
	;;
tsync)
	"${hooked[@]}" ESCA_DEBUG=1 "$CASEBIN/h_tsync" "$work" 2> "$work/stderr" ||
		fail "$(cat "$work/stderr")"
	cat "$work/stderr"
	grep -q 'deferred write(fd=77) failed: Operation not permitted' "$work/stderr" ||
		fail "libesca did not report EPERM for the filtered write"
	grep -q 'deferred write(fd=79) failed: Invalid cross-device link' "$work/stderr" ||
		fail "libesca did not report the filter's EXDEV for the write after it"
	;;
signal)
	"${hooked[@]}" ESCA_TABLE_ENTRIES=4095 ESCA_ARENA_BYTES=33554432 \
		"$CASEBIN/h_signal" "$work/data" 2> "$work/stderr" || fail "$(cat "$work/stderr")"
	grep -q "backend=module" "$work/stderr" || fail "libesca did not use the module"
	;;
*)
	fail "unknown check"
	;;
esac
rm -rf "$work"
