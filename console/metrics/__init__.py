"""``GET /metrics`` (docs/operations.md "Metrics"): the counters of ``portal.metrics`` plus gauges
read from the database when scraped (:mod:`console.metrics.collector`)."""
