"""The public engine API: load a model folder onto a wafer, then stream tokens as events."""
from .engine import Engine, PromptTooLong, Session, Stream, Superseded
from .events import Done, Stats, Token

__all__ = ["Engine", "Stream", "Session", "Token", "Done", "Stats", "PromptTooLong", "Superseded"]
