"""Side-by-side benchmarks of icestack against aioice (not part of the installed package)."""
