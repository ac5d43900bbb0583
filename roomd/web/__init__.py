"""The HTTP side of rooms: one request pipeline, validation, the JSON envelope, routes and request logs."""
