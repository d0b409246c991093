"""Scale-out on RabbitMQ (``[cluster] engine = "rabbitmq"``): the topology on
the broker, the partitioned ingest source with its leases, the restore of a
vehicle first seen by a worker, and the hub feed between workers and API
nodes. See README "Scale-out" and docs/scale-out-research.md."""
