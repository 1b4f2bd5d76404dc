"""The package's version, in one place.

It imports nothing, so the build reads it (pyproject.toml's dynamic
version) without the C extension, and ``tornado_cgen.__version__`` is
this value.
"""
__version__ = "0.1.0"
