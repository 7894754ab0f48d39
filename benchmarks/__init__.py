"""The benchmark harness: resnet-serve against its ceilings and its peers (``python -m benchmarks``).

Not part of the installed package; it needs the ``bench`` extra (``requirements/bench.lock``).
"""
