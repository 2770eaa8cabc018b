"""Pending security updates: what each instance reports (minion side) and when the group must be rebuilt
early because of them (controller side).

Minion side: ``phoenix_patches.pending`` asks the distribution's tools (:mod:`.apt`) or a simulated
feed (:mod:`.feed`) which security updates are pending, and since when (:mod:`.report`); Salt's mine
carries the report to the master (``mine_functions``), so the minion id it is filed under is
authenticated. Controller side: :mod:`.lag` turns the reports into each instance's patch lag and decides
whether a cycle must start before ``max_age`` would ask for one.
"""
