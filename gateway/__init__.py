"""The gateway: REST API, WebSocket chat UI, feedback, live statistics and API-key auth.

Layout: ``app`` wires the parts; ``api`` (HTTP routes) and ``chat`` (WebSocket) are the two
transports over one core, ``classifier`` + ``replies``; ``kafka`` and ``db`` are the adapters;
``routing`` ties each route to its role and its OpenAPI operation; ``errors`` maps every
domain error to HTTP and WebSocket answers in one place.
"""
