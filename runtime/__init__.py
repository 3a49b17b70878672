"""The services' shared process shell (ARCHITECTURE: "a small runtime package").

What every service does the same way and that is neither the wire (``contracts``) nor the model
core (``inference``): for now, waiting for its dependencies at start-up (``runtime.startup``,
``runtime.kafka``). Services import it; it imports no service.
"""
