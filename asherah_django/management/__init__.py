"""Management commands of asherah_django (all prefixed ``asherah_``)."""
