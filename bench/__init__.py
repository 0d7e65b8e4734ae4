"""The benchmark harness behind `make bench`: everything on loopback, every figure a ratio to a
baseline measured in the same run (the machines here are shared and noisy)."""
