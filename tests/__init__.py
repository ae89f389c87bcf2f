"""The test suite: one package per area, real components from `tests.support`."""
