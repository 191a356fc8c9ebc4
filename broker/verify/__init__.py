"""``odradek verify``: fault injection under a checked workload (docs/reliability.md).

runner.py drives one run: it starts a cluster of real nodes (local_cluster, or cluster.py's
nodes in the network namespaces of netns.py), runs the workload (workload.py: producers.py,
consumers.py, topic_state.py, final_read.py) while faults.py injects a seeded schedule,
records every step in a history (history.py), checks it (checker.py) and writes the report
(report.py). The client libraries it drives and matplotlib come with the ``verify`` extra and
are imported only where used, so nothing here weighs on the node or the other commands.
"""
