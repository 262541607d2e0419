"""Django-free test helpers shared by test directories (real OpenBao server, TLS, Kubernetes)."""
