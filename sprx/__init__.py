"""sprx: a warehouse for social prescribing data in the English NHS."""

__version__ = "0.1.0"
