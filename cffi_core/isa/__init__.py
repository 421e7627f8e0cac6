"""The instruction table of P64 and what is derived from it (encoding, generated files)."""
