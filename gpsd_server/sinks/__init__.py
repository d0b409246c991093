"""Sinks: where enriched fixes and events go (database writer, live hub)."""
