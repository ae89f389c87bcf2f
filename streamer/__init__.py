"""The media plane: an RTP-forwarding SFU built on aiortc.

Publishers attach tracks to sources; outputs point at one source at a time;
subscribers receive outputs on one peer connection. Media is forwarded packet
by packet, never decoded. This package knows nothing of events, roles or
tokens.
"""
