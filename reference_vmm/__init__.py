"""Reference VMMs, one per technique of Fisher-Ogden (2006); they arrive with the conformance issue."""
