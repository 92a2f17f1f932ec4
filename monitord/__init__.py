"""monitord: a Prometheus exporter for audio/video conferencing quality."""

__version__ = "0.1.0"
