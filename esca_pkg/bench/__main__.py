from esca_pkg.bench.cli import main

main()
