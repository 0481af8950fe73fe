"""HTTP: one thin router per resource, the error handlers, and server-sent events."""
