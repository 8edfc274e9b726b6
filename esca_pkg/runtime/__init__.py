"""What libesca needs at run time, seen from the tools: which backend can run
(backends), whether a binary carries the hooks (hooks), where libesca is
(library), where live counters may be kept (statsdir) and how to read them
(stats).  esca-run, esca-bench, esca-stat, doctor and the tests use these."""
