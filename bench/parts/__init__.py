"""The parts of bench/throughput.py, one module each (bench/throughput.py lists them)."""
