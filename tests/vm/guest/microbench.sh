#!/bin/bash
# libesca's micro-benchmark in the guest: ESCA_BACKEND=off against module,
# the module forced for every segment (ESCA_ADAPT=0: the mechanism's cost),
# and as shipped (module-adapt: libesca measures and batches where it pays).
# TCG times are not hardware times; only the ratios mean something.
# shellcheck source=/dev/null
. "$(dirname "$0")/plan.env"
set -eu
bench=$REPO/libesca/build/esca-microbench
lib=$REPO/libesca/build/libesca.so.0
for op in write close; do
	for batch in 1 8 32 64; do
		for backend in off module; do
			line=$(ESCA_ADAPT=0 ESCA_BACKEND=$backend LD_PRELOAD=$lib "$bench" "$op" "$batch" 200)
			echo "$backend $line"
		done
		line=$(ESCA_BACKEND=module LD_PRELOAD=$lib "$bench" "$op" "$batch" 200)
		echo "module-adapt $line"
	done
done
