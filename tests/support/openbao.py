"""Moved to :mod:`asherah_django.testing.openbao` (the demo and users' suites use it too)."""

from asherah_django.testing.openbao import *  # noqa: F403
from asherah_django.testing.openbao import (  # noqa: F401
    DEFAULT_TRANSIT_KEY,
    ROTATE_POLICY,
    TRANSIT_POLICY,
    OpenBaoError,
    OpenBaoServer,
    find_bao,
    free_port,
    rotate_policy,
    transit_policy,
)
