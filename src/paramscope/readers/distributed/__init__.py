"""Checkpoints and models sharded over many ranks, read from their metadata without gathering.

- :mod:`.dcp`: PyTorch Distributed Checkpoint folders (``.metadata`` + ``__R_N.distcp``);
  :mod:`.dcp_pickle` parses the metadata, :mod:`.dcp_folder` checks it against the files.
- :mod:`.fsdp1`: FSDP1 ``SHARDED_STATE_DICT`` rank files (ShardedTensors saved per rank).
- :mod:`.deepspeed`: DeepSpeed ZeRO 1/2/3 folders.
- :mod:`.deepspeed_universal`: DeepSpeed universal checkpoints (``ds_to_universal``'s output).
- :mod:`.megatron`: Megatron-LM tensor/pipeline-parallel folders.
- :mod:`.layout`: which rank holds which slice of which tensor, and what another world size takes.
- :mod:`.live`: sharded live modules (DTensor, FSDP1 FlatParameter, ZeRO-3) counted globally
  from inside the job, without a collective.
- :mod:`.torch_file`: one ``torch.save`` rank file read with a reader's own pickle rules.

docs/distributed-checkpoints.md describes the formats.
"""
