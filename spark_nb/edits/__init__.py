"""Edits: prompts per model family, the driver for one edit, and the guard that decides whether it applies.

    from spark_nb.edits import edit, check
    result = edit(code, "add docstrings")      # EditResult(code, original, ok, error, stats, text, ...)
"""
from __future__ import annotations

from .edit import BUILTIN, EditResult, drain, edit, edit_steps, get_engine, loaded_engines
from .guard import check, parse_error
from .recognise import recognise

__all__ = ["edit", "edit_steps", "drain", "EditResult", "check", "parse_error", "recognise", "get_engine",
           "loaded_engines", "BUILTIN"]
