"""Statistics: the tables' migrations and their one writer, the faust stream processor
(``python -m stats``). The gateway reads them through its own ``gateway.readmodel``."""
