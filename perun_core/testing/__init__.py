"""Conformance suites every plugin runs (``pip install perun-core[testing]``).

Each module holds a mixin class of pytest tests and documents the fixtures a plugin overrides.
Nothing here is imported by the core at run time.
"""
