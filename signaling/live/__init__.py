"""The live event: who is on air, where the streamer points, what clients see.

One `LiveEvent` per node and event (`event`). Its rooms:

- `replica`: the shared state and the `Change`s that move it, alike on every node;
- `bus`, `redis_bus`: how changes and each node's `presence` reach every node;
- `commands`: what clients may ask, checked and turned into changes;
- `media_plan`: the routing rule's result pointed at the streamer's outputs and slots;
- `media_watch`: failover from stopped voices, and the alarms;
- `views`: the state each role is shown;
- `outputs`, `clients`: the names given to the streamer, and the connections;
- `hub`: the embedded bus between the workers of one machine (run by their supervisor).

Import what you need from its module (`signaling.live.event`, `signaling.live.clients`,
`signaling.live.outputs`, ...): this package imports nothing itself, so that the
workers' supervisor, which runs the `hub` alone, does not load the streamer and aiortc.
"""
