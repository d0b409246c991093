"""The pure core: decoding, filtering, geometry, rules and the engine.

Nothing in this package performs I/O, reads a clock or imports asyncio,
aiomqtt, psycopg or websockets; a test enforces it. Functions take values and
``now`` and return values and events.
"""
