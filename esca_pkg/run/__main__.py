from esca_pkg.run.cli import main

main()
