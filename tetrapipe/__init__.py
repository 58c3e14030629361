"""tetrapipe: Tetragon event analytics and detection pipeline."""

__version__ = "0.1.0"
