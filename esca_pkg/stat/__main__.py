from esca_pkg.stat.cli import main

main()
