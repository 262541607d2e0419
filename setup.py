"""Build script for the optional C extension; the project metadata lives in pyproject.toml.

``asherah_django.core._speedups`` (CPython C API + OpenSSL libcrypto) does the per-value
AES-256-GCM work of Session.encrypt/decrypt in one call. It is optional: without a C
compiler or the OpenSSL headers (Debian/Ubuntu: ``libssl-dev``) the build prints a warning
and the package falls back to its pure-Python path, which is the reference implementation.
Build in place for a development checkout with ``python setup.py build_ext --inplace``.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "asherah_django.core._speedups",
            ["asherah_django/core/_speedups.c"],
            libraries=["crypto"],
            optional=True,
        )
    ]
)
