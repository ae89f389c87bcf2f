"""Real components for the tests: redis-server, the HTTP server, Chromium, tones."""
