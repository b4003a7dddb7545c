"""Benchmarks of the HCC DSFR book: what each stage costs, how it grows with the cohort, how close it runs to the
machine's limit. Run ``python -m benchmarks`` (``make bench``); ``python -m benchmarks report`` rewrites
``benchmarks/README.md`` from the latest results JSON. Speed is measured here, never in timed tests.
"""
