"""Checkpoints and models sharded over many ranks, read from their metadata without gathering.

- :mod:`.dcp`: PyTorch Distributed Checkpoint folders (``.metadata`` + ``__R_N.distcp``).
- :mod:`.layout`: which rank holds which slice of which tensor, and what another world size takes.
- :mod:`.live`: DTensor-sharded live modules (FSDP2 ``fully_shard``, tensor parallel) counted
  globally from inside the job, without a collective.

docs/distributed-checkpoints.md describes the formats.
"""
