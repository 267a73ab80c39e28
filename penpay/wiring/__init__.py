"""The composition root's wiring, one module per daemon: what each command, the embedded stack,
the cluster and the tests build a process from. Only this floor reads settings and picks adapters."""
