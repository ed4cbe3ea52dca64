"""Tests over HTTP against real S3-protocol servers and a real Datasette; shared helpers."""
