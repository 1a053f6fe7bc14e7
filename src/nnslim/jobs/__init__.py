"""The pipeline layer: one module per job, each a function from a typed request to a typed result.

The CLI, the demo, the sweep worker and the benchmarks call these functions; none of them
prints: progress goes through a ``Progress`` callback, results come back as dataclasses whose
``to_json()`` is what ``--json`` writes.
"""
