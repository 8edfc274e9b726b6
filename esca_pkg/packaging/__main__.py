from esca_pkg.packaging.cli import main

main()
