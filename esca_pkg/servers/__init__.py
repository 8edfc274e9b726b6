"""The server model: one recipe per server (servers/<name>/recipe.toml) and
everything that runs one: the registry of recipes, a private configuration,
start / wait / stop (serve), and the wrk + perf measurer (measure).  esca-pkg
builds from the same recipes (esca_pkg/packaging/targets/server.py)."""
