"""Engines that are not in-process: OpenAI-compatible servers (vLLM, SGLang, llama.cpp, Ollama, Cerebras, `spark-nb
serve`) behind the same event stream as `spark_nb.engine.Engine`.

    engine = remote_engine("openai:qwen2.5-coder:7b@http://localhost:11434/v1")
    for event in engine.stream(messages, max_new_tokens=256): ...   # Token events, then one Done

`spark_nb.edits.get_engine` takes the same names: "openai:MODEL@URL", a named endpoint (`ENDPOINTS`, which
`c.Spark.endpoints` fills), or an endpoint dict.
"""
from __future__ import annotations

from .remote import ENDPOINTS, Endpoint, RemoteEngine, RemoteStream, TIMEOUTS, is_remote, remote_engine

__all__ = ["ENDPOINTS", "Endpoint", "RemoteEngine", "RemoteStream", "TIMEOUTS", "is_remote", "remote_engine"]
