"""Moved to :mod:`asherah_django.testing.tls`."""

from asherah_django.testing.tls import *  # noqa: F403
from asherah_django.testing.tls import CertificateAuthority  # noqa: F401
