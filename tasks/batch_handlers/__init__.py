"""Batch handlers: the code that writes one flushed batch of a kind (workers/batching), beside
the stages that raise `AwaitingBatch` for it. A handler is domain code (Xero and Zoho calls,
links), so it lives with the stages, not in the product-agnostic workers/; each registers its
kind with `batch_handler` when its stage module imports it."""
