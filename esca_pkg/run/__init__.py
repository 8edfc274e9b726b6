"""esca-run: run a patched server (or any hooked program) under ESCA."""
