"""pull: download a model from the Hugging Face hub into its cache with huggingface_hub, and say its name.

    pull("Qwen/Qwen2.5-Coder-0.5B-Instruct")                     # a model folder: config, tokenizer, safetensors
    pull("Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF", "qwen2.5-coder-0.5b-instruct-q8_0.gguf")   # one GGUF file

The repo's file list is read first (one API call), so a wrong repo, a missing file or a repo of several GGUF files
and no --file is one clear error before anything is downloaded. HF_ENDPOINT, HF_HOME / HF_HUB_CACHE and HF_TOKEN
are honoured as they are when pull runs.
"""
from __future__ import annotations

import difflib
import importlib
import os
from contextlib import contextmanager
from pathlib import Path

from ..errors import ModelLoadError
from .huggingface import hub_cache

FOLDER_FILES = ["*.json", "*.safetensors", "*.txt", "*.jinja", "tokenizer.model"]  # config, tokenizer, weights


class PullError(ModelLoadError):
    """A model cannot be downloaded: no such repo or file, no network, a gated repo."""


def pull(repo: str, file: str | None = None, revision: str = "main") -> tuple[str, Path]:
    """Download a model folder (config, tokenizer and safetensors) or one GGUF file of `repo` into the hub cache;
    return (the name spark-nb knows it by, its path)."""
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download

    where = dict(cache_dir=hub_cache(), endpoint=os.environ.get("HF_ENDPOINT") or None)
    endpoint = where["endpoint"] or "https://huggingface.co"
    with _errors(repo, endpoint):
        files = [s.rfilename for s in HfApi(endpoint=where["endpoint"]).model_info(repo, revision=revision).siblings]
    ggufs = sorted(f for f in files if f.lower().endswith(".gguf") and not f.lower().startswith("mmproj"))
    if file is None and "config.json" not in files:
        if len(ggufs) != 1:
            raise PullError(f"{repo} has no config.json" + (
                f" but {len(ggufs)} GGUF files; pick one with --file: {', '.join(ggufs)}" if ggufs else
                " and no .gguf file: it is not a model spark-nb can load"))
        file = ggufs[0]
    if file is not None:
        if file not in files:
            listed = f"its GGUF files: {', '.join(ggufs)}" if ggufs else \
                f"close: {', '.join(difflib.get_close_matches(file, files, n=5, cutoff=0.3)) or 'none'}"
            raise PullError(f"{repo} has no file {file!r}; {listed}")
        with _errors(repo, endpoint):
            path = Path(hf_hub_download(repo, file, revision=revision, **where))
        return f"{repo}/{file}", path
    with _errors(repo, endpoint):
        path = Path(snapshot_download(repo, revision=revision, allow_patterns=FOLDER_FILES, **where))
    return repo, path


@contextmanager
def _errors(repo: str, endpoint: str):
    """huggingface_hub's errors (and its HTTP library's, whichever version it uses) as one PullError each."""
    try:
        yield
    except PullError:
        raise
    except Exception as err:
        explained = _explain(err, repo, endpoint)
        if explained is None:
            raise
        raise explained from None


def _explain(err: Exception, repo: str, endpoint: str) -> PullError | None:
    from huggingface_hub import errors

    if isinstance(err, errors.GatedRepoError):
        return PullError(f"{repo} is gated: accept its terms on the hub and log in (`hf auth login` or HF_TOKEN), "
                         "then pull again")
    if isinstance(err, errors.RepositoryNotFoundError):
        return PullError(f"no model repository {repo!r} on {endpoint} (or it is private: log in with "
                         "`hf auth login` or set HF_TOKEN)")
    if isinstance(err, errors.RevisionNotFoundError):
        return PullError(f"{repo} has no such revision (branch, tag or commit)")
    if isinstance(err, errors.EntryNotFoundError) and not isinstance(err, errors.LocalEntryNotFoundError):
        return PullError(f"{repo}: a file is missing on the hub ({err})")
    if isinstance(err, _network_errors()):
        return PullError(f"cannot reach {endpoint} to download {repo} (no network, or HF_HUB_OFFLINE is set); "
                         "models already on this machine: `spark-nb models`")
    if isinstance(err, errors.HfHubHTTPError):
        return PullError(f"the hub refused the download of {repo}: {err}")
    return None


def _network_errors() -> tuple[type, ...]:
    """Connection failures as huggingface_hub raises them (its offline errors, and the HTTP library's own)."""
    from huggingface_hub import errors

    found = [errors.OfflineModeIsEnabled, errors.LocalEntryNotFoundError, ConnectionError, TimeoutError]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "RequestException")):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(found)
