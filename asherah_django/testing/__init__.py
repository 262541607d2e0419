"""Helpers for users' own test suites: a pytest plugin (registered as ``asherah_django``)
and a KMS call counter. Nothing here is imported by the app at run time."""
