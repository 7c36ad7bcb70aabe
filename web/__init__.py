"""The officers' web pages: server-rendered HTML over the same services as the HTTP API."""
