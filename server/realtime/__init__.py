"""Socket.IO: the server, its fan-out manager and the /client and /admin namespaces."""
