"""esca-pkg: build ESCA's Debian packages (targets/), publish them as an apt
repository (repo.py) and check a machine (doctor.py)."""
