"""Benchmarks: speed and memory of the engine (``speed``), animation quality (``quality``) and the
API under load (``api_load``). ``stillmotion bench`` runs them; docs/BENCHMARKS.md keeps the numbers."""
