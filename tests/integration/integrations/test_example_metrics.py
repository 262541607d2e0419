"""example_project serves the Prometheus metrics at /metrics (a subprocess: its own settings)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.support.common import ROOT


def test_example_project_metrics_endpoint_is_scraped() -> None:
    script = textwrap.dedent(
        """
        import os, sys
        sys.path[:0] = [os.getcwd(), os.path.dirname(os.getcwd())]
        os.environ["DJANGO_SETTINGS_MODULE"] = "demo_site.settings"
        import django
        django.setup()
        from django.test import Client
        from prometheus_client.parser import text_string_to_metric_families
        response = Client().get("/metrics", HTTP_HOST="localhost")
        assert response.status_code == 200, response.status_code
        assert response["Content-Type"].startswith("text/plain")
        names = {f.name for f in text_string_to_metric_families(response.content.decode())}
        wanted = {"asherah_operations", "asherah_cache_requests", "asherah_kms_calls",
                  "asherah_metastore_call_seconds", "asherah_decrypt_failures"}
        assert wanted <= names, sorted(names)
        print("scraped", len(names))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT / "example_project",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("scraped")
