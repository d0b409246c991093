"""PostgreSQL/TimescaleDB: schema migrations, the batched track writer, queries."""
