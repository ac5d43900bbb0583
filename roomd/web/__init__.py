"""The HTTP edge: validation, the JSON envelope, routes, request logs and the command line."""
