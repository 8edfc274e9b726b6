#!/bin/bash
# The guest of tests/servers/test_upstream_suites.py (the module backend):
# loads the module built for this kernel, then runs each server's own test
# suite plain and under libesca with ESCA_BACKEND=module, ESCA_ADAPT=0
# (tests/servers/upstream_support.py, which writes its comparison to
# $run/KIND.json for the host).  The root is the host's, read-only: the
# servers and their modules are the host's installed +esca1 builds.
run=$1
# shellcheck source=/dev/null
. "$run/plan.env"
# shellcheck source=tests/guest/steps.sh
. "$run/steps.sh"
export HOME=/tmp LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PATH=/usr/sbin:/usr/bin:/sbin:/bin
uname -r > "$run/uname"

must load 120 insmod "$KO"
# The suites run as nobody; without udev the node is root's alone (0600).
# As esca-dkms's udev rule gives it to the group esca, give it to nobody's
# group: the servers then use the module, not pass-through.
must devnode 10 sh -c 'chgrp nogroup /dev/esca && chmod 0660 /dev/esca'
for kind in $SUITES; do
	files_var=FILES_$kind
	read -ra files <<< "${!files_var:-}"
	step "suite-$kind" "$SUITE_TIMEOUT" "$REPO/.venv/bin/python" \
		"$REPO/tests/servers/upstream_support.py" "$kind" --pass module \
		--library "$LIBRARY" --pass-timeout "$PASS_TIMEOUT" \
		--json "$run/$kind.json" "${files[@]}"
done
step rmmod 60 rmmod esca
finish
