"""Hugging Face hub ids read from the local cache, offline: ``meta-llama/Llama-2-7b-hf``.

paramscope never downloads. A hub id names a snapshot folder that ``huggingface_hub`` (and so
``transformers``, ``huggingface-cli download``) has already written to the cache, laid out as::

    $HF_HUB_CACHE/models--meta-llama--Llama-2-7b-hf/
        refs/main                     the commit hash the branch pointed to when downloaded
        snapshots/<commit>/config.json -> ../../blobs/<sha256>
        blobs/<sha256>

The cache folder is ``HF_HUB_CACHE``, else ``HUGGINGFACE_HUB_CACHE``, else ``$HF_HOME/hub``, else
``$XDG_CACHE_HOME/huggingface/hub``, else ``~/.cache/huggingface/hub``, as in
``huggingface_hub.constants``. The snapshot is then read like any local folder: the config, the
shard index and the safetensors headers, never the weights.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["HUB_ID", "hub_cache_dir", "looks_like_hub_id", "snapshot_folder", "snapshot_source"]

#: ``name`` or ``org/name``, optionally ``@revision``: the characters the hub allows in a repo id.
HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]{0,95}(?:/[A-Za-z0-9][\w.-]{0,95})?)(?:@(?P<rev>[\w.-]{1,255}))?$")


def hub_cache_dir() -> Path:
    """The cache folder huggingface_hub writes to, from the same environment variables.

    Example:
        >>> import os
        >>> os.environ["HF_HUB_CACHE"] = "/data/hub"
        >>> str(hub_cache_dir())
        '/data/hub'
        >>> del os.environ["HF_HUB_CACHE"]
    """
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(os.path.expandvars(os.path.expanduser(explicit)))
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"
    )
    return Path(os.path.expandvars(os.path.expanduser(home))) / "hub"


def looks_like_hub_id(text: str) -> bool:
    """Whether ``text`` could be a hub id (and is not a path with a suffix like ``.json``).

    Example:
        >>> looks_like_hub_id("meta-llama/Llama-2-7b-hf"), looks_like_hub_id("gpt2")
        (True, True)
        >>> looks_like_hub_id("model.safetensors"), looks_like_hub_id("../x"), looks_like_hub_id("a/b/c")
        (False, False, False)
    """
    m = HUB_ID.match(text)
    if not m or ".." in text or "--" in m.group("repo"):
        return False
    last = m.group("repo").rsplit("/", 1)[-1]
    return not re.search(r"\.(json|safetensors|bin|pt|pth|gguf|onnx|keras|h5|py|ckpt)$", last)


def snapshot_folder(hub_id: str, cache: Path | None = None) -> Path | None:
    """The cached snapshot folder of ``hub_id`` (``org/name[@revision]``), or ``None``.

    ``revision`` is a branch or tag (looked up in ``refs/``) or a commit hash; the default is
    ``main``. Nothing outside the cache is touched and nothing is downloaded.
    """
    m = HUB_ID.match(hub_id)
    if not m:
        return None
    repo, revision = m.group("repo"), m.group("rev") or "main"
    root = (cache or hub_cache_dir()) / ("models--" + repo.replace("/", "--"))
    ref = root / "refs" / revision
    if ref.is_file():
        commit = ref.read_text(encoding="ascii", errors="replace").strip()[:255]
        if re.fullmatch(r"[\w.-]+", commit):
            revision = commit
    folder = root / "snapshots" / revision
    return folder if folder.is_dir() else None


def snapshot_source(folder: Path) -> Path | None:
    """What to read in a snapshot: the folder when its weights are all there, else its config.

    A snapshot often holds only ``config.json`` (and the shard index): ``transformers`` fetched
    the config, or the user downloaded just the small files. Then the model is built from the
    config on the meta device. ``None`` when there is neither weights nor a config.
    """
    from paramscope.core.errors import ParamscopeError
    from paramscope.core.strict_json import MAX_JSON_BYTES, loads_strict

    weights = [p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file()]
    index = next((p for p in folder.glob("*.index.json") if p.is_file()), None)
    complete = bool(weights)
    if index is not None:
        try:
            with index.open("rb") as f:
                doc = loads_strict(f.read(MAX_JSON_BYTES + 1), where=str(index))
            weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
            shards = {str(s) for s in weight_map.values()} if isinstance(weight_map, dict) else set()
            complete = bool(shards) and all((folder / s).is_file() for s in shards)
        except (OSError, ParamscopeError):  # a damaged index is the folder reader's to report
            complete = True
    if complete:
        return folder
    config = folder / "config.json"
    return config if config.is_file() else None
