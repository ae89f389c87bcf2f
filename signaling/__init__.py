"""The control plane: the event program, registration, tokens, the durable
store, the live state of the event and the HTTP + WebSocket server."""
