"""forexd: an actor-based async daemon that trades FX with self-retraining ML models."""

__version__ = "0.1.0"

__all__ = ["__version__"]
