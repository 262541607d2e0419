"""Key management services: where the master key lives."""
