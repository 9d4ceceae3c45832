"""microseg: an open-source microsegmentation controller for switch fabrics."""

__version__ = "0.1.0"
