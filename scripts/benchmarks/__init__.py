"""The parts of scripts/bench.py, one job per module (the entry point and its options stay in bench.py)."""
