"""The VMM contract, the pytest plugin and the conformance tests (Popek & Goldberg 1974)."""
