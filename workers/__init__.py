"""Background workers: the outbox relay and the event-consumer runtime (PEC 9).

How events move:

1. A use case commits its effect and its domain events (`domain_events` rows, the outbox)
   in one database transaction (persistence.unit_of_work.SqlUnitOfWork).
2. `workers.relay.OutboxRelay` claims committed, unpublished rows
   (`FOR UPDATE SKIP LOCKED`, never "id > last seen"), publishes them to the bus, marks them
   published and commits. At-least-once: a crash between publish and commit republishes.
3. `workers.consumer.EventConsumer` reads a stream in a consumer group. For each message it
   opens a unit of work, records (group, event id) in `processed_events` (the inbox), runs
   the handler, commits, then acknowledges. A redelivered event finds its inbox row and is
   only acknowledged: effectively once.
4. A message that fails `max_deliveries` times goes to `<stream>.dead` with its error, is
   counted (`penpay_dead_letters_total`) and can be replayed (`penpay dead-letters`).

The bus is a port, `workers.bus.MessageBus`, with two adapters: Redis Streams
(`workers.redis_bus.RedisStreamsBus`, when PENPAY_REDIS_URL is set) and an in-process asyncio
bus (`workers.memory_bus.InProcessBus`, the embedded default). The relay and the consumer
runtime only know the port.

Ordering: a consumer group does not keep per-aggregate order (two consumers, redeliveries,
replays). Handlers must check the aggregate's current version/state and ignore stale events;
`EventEnvelope.aggregate_version` is there for that.
"""
