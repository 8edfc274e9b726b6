#!/bin/bash
# shellcheck disable=SC2317  # the steps are functions called through step/must
# scripts/guest-bench inside the QEMU guest (booted with -icount): load the
# module, show the hooked servers' files (extracted on the host into
# $run/stage) over /usr, run the calibration program, then the servers.
# $1 is the run directory shared with the host; plan.env there says what runs.
run=$1
# shellcheck source=/dev/null
. "$run/plan.env"
# shellcheck source=tests/guest/steps.sh
. "$run/steps.sh"
export HOME=/tmp LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PATH=/usr/sbin:/usr/bin:/sbin:/bin
uname -r > "$run/uname"
cat /proc/cmdline > "$run/cmdline"

load() {
	# serve_bench counts system calls with perf (syscall tracepoints on),
	# under which the module would refuse its batches: it runs them as
	# it does unobserved (docs/module.md, trace_bypass)
	insmod "$KO" trace_bypass=1 || return 1
	# the workers run as www-data; no udev here to give /dev/esca its group
	chmod 0666 /dev/esca
	ls -l /dev/esca
}

stage() {
	# the servers' packages, extracted on the host: a read-only overlay
	# with them above the shared root's /usr
	modprobe overlay 2>/dev/null || true
	mount -t overlay overlay -o "lowerdir=$run/stage/usr:/usr" /usr || return 1
	local b
	for b in $BINARIES; do
		ls -l "$b" || return 1
	done
}

if [ "${2:-}" = __call ]; then
	shift 2
	"$@"
	exit
fi

must load 900 load
[ -z "$BINARIES" ] || must stage 900 stage
step calib 1800 "$run/calib" "$CALIB_CALLS"
[ -z "$BINARIES" ] || step serve 7200 "$REPO/.venv/bin/python" "$run/serve_bench.py" --repo "$REPO" \
	--out "$run/serve.json" --plan "$run/serve_plan.json"
step rmmod 60 rmmod esca
finish
