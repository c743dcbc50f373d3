"""Hugging Face sources: `config.json` built on the meta device, and the folder conventions (shard indexes, config facts) shared by checkpoint readers."""
