"""The one version string. Bump it (and add a CHANGELOG line) whenever numbers may change:
run ids hash it, so a new version recomputes every run instead of reusing stale records."""

__version__ = "0.10.2"
