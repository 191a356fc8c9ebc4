"""The web console (``odradek console``): a browser view of a cluster, read like any client
reads it, through the Kafka protocol and the nodes' Prometheus metrics.

``metrics_view`` turns scraped metrics into per-node health (pure); ``reader`` asks the
cluster through kafka-python; ``app`` serves the JSON API and the page (``static/``).
"""
