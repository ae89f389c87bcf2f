"""End to end: a node with the consoles, driven from headless Chromium with fake media."""
