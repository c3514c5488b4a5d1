"""The alertmesh protocol as plain objects and pure functions (no I/O, no clock)."""
