"""The socket transport: Engine.IO websockets, the Socket.IO server, handshake admission, replica-named sids."""
