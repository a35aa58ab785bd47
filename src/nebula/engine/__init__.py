"""The reconciler: observe → plan → apply, with ordering, concurrency and health waits."""
