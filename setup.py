from setuptools import setup; setup(cffi_modules=["cffi_core/_build.py:ffibuilder"])  # noqa: E702, I001
