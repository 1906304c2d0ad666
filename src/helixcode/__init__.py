"""HelixCode: split a large software task into a graph, schedule it durably, run it with LLM agents."""

from helixcode.errors import HelixError

__all__ = ["HelixError", "__version__"]
__version__ = "0.1.0"
