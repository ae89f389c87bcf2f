"""The live control plane: the WebSocket protocol, booth rules, routing rule, live media."""
