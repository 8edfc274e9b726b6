#!/bin/bash
# The guest side of tests/vm/test_module_signing.py: a kernel booted with
# module.sig_enforce=1 must refuse the unsigned esca.ko, and what the tools
# say about it (esca_pkg/runtime/signing.py, esca-pkg doctor, esca-dkms's
# postinst function) must name the enrollment.  $1 is the run directory;
# plan.env: KO, POSTINST (the rendered postinst of esca-dkms).
run=$1
# shellcheck source=/dev/null
. "$run/plan.env"
# shellcheck source=tests/guest/steps.sh
. "$run/steps.sh"
export HOME=/tmp LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PATH=/usr/sbin:/usr/bin:/sbin:/bin
uname -r > "$run/uname"
cat /proc/cmdline > "$run/cmdline"

# The postinst's signature function alone (its other parts need dpkg).
# shellcheck disable=SC2317  # a step: called through __call
postinst_signing() {
	sed -n '/^# esca-signing: begin$/,/^# esca-signing: end$/p' "$POSTINST" > "$run/signing-function.sh"
	# shellcheck source=/dev/null
	. "$run/signing-function.sh"
	esca_signing "$1"
}

if [ "${2:-}" = __call ]; then
	shift 2
	"$@"
	exit
fi

step sig_enforce 10 cat /sys/module/module/parameters/sig_enforce
step insmod 60 insmod "$KO"
error=$(cat "$run/results/insmod.out")
step detect 120 "$REPO/.venv/bin/python" -m esca_pkg.runtime.signing "$KO" "$error"
step doctor 180 "$REPO/.venv/bin/esca-pkg" doctor --area run
step postinst 60 postinst_signing "$error"
finish
