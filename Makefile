# make demo  - the example project against a local OpenBao (Vault-compatible) server
# make test  - the whole test suite (lint, types, SQLite, PostgreSQL, MariaDB, a bounded mutation
#              run) on Django 6.1 / Python 3.13, and the SQLite suite on every other tested combination
# make docs  - the documentation site (Sphinx, furo, MyST) in docs/_build/html, warnings as errors
# make bench - every benchmark, each in its own process, as one table (quick mode, a few
#              minutes; BENCH_ARGS="--full --check" for the scripts' own rounds and exit 1 on
#              a missed target), also written to benchmarks/results.md
# make bench-scale - the maintenance commands on 1,000,000 PostgreSQL rows (ROWS=..., DATABASE_URL=...)
# make mutate - mutation testing of the security-critical modules, every mutant (long)
.PHONY: demo test bench bench-scale venv lint clean mutate docs

demo:
	scripts/demo.sh

test:
	scripts/test.sh

mutate: venv
	scripts/mutate.sh full $(MUTATE_ARGS)

docs: venv
	.venv/bin/python -m sphinx -W --keep-going -b html docs docs/_build/html

venv:
	scripts/bootstrap.sh

lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports

bench: venv
	.venv/bin/python benchmarks/run_all.py $(BENCH_ARGS)

ROWS ?= 1000000
bench-scale: venv
	.venv/bin/python benchmarks/table_scale.py --rows $(ROWS)

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache build dist *.egg-info docs/_build
