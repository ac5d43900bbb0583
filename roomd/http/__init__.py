"""The HTTP server under the app: hypercorn's trio pieces with roomd's connection policy."""
