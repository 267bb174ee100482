"""Tools that break a running pipeline on purpose and check, event by event, what came out.

``python -m grey.chaos.eos`` (or ``scripts/chaos-eos``) runs the exactly-once
workload of :mod:`grey.chaos.app` on several ``grey worker`` processes, kills
them at random, and counts duplicates, losses and wrong totals.
"""
