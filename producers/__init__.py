"""Command-line producers: the other ways reviews enter reviewstream besides the gateway.

- ``python -m producers bulk FILE``: classify a file of reviews (CSV, JSONL or plain text, or
  stdin) through the workers, optionally writing the predictions to a file; resumable.
- ``python -m producers replay FILE``: replay a labelled stream as live traffic (requests, then
  the true labels as feedback), at a set rate; or replay an earlier range of the requests topic.

Layout: ``readers`` (files -> rows), ``pacing`` (the rate), ``kafka`` (clients and topic ranges),
``traffic`` (requests out, predictions back), ``bulk`` and ``replay`` (the two runs), ``output``
(the predictions file), ``report`` (the summary), ``cli`` (typer, wiring, exit codes).
"""
