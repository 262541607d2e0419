"""Integrations with other libraries; each module needs its optional extra (see README)."""
