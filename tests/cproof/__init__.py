"""The C accelerator's proof (issue #21): fuzz targets, the memcheck driver, the seed corpus.

Not a pytest folder: scripts/c_proof.sh runs these under ASan/UBSan, valgrind and atheris
(docs/accelerator.md). tests/unit/core/test_speedups.py replays the seed corpus.
"""
