"""What the tests and the benchmarks both stand on.

`bench/` may not import `tests/` (a benchmark must run without the test tree's fixtures and
dependencies), yet both need the same impaired network to measure and to check the media
path under it. Such pieces live here. Not shipped: the package lists only `streamer` and
`signaling`.
"""
