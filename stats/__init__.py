"""Statistics: the schema and migrations, the faust stream processor (``python -m stats``) and
the read side the gateway imports (``stats.queries``)."""
