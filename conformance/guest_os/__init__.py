"""The guest software of the benchmarks and of the ``os`` conformance category: nanobench and p64os (README.md)."""
