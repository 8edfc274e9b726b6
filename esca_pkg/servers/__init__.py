"""Patched servers: Debian source rebuilds (nginx, lighttpd), lwan from upstream."""
