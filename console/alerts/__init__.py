"""Alerts (docs/operations.md "Alerts"): webhooks told once when a problem starts and once when it
clears. :mod:`problems` says what is wrong now, :mod:`services` compares that with the problems
still open and queues one delivery per webhook, :mod:`webhooks` posts it."""
