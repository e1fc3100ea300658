"""Surface inspection agent: CSE anomaly scoring on production-line frames."""

__version__ = "0.1.0"
