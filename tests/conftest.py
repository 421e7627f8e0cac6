"""Shared test configuration: hypothesis profiles (dev, ci, thorough)."""

from conformance.hypothesis_profiles import register

register()
