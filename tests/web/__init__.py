"""The web side: pages, the JSON API, health and metrics, logs, the command line and the README."""
