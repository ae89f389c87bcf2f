"""Signed links and the node's secret and settings."""
