"""esca-stat: the live view of what ESCA does in running processes."""
