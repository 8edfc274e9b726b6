"""esca-bench servers: A/B benchmarks of the patched servers, vanilla (libesca in
pass-through, --backend off) against each usable ESCA backend, with wrk as the
load generator and perf counting the workers' system calls."""
