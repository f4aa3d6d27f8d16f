"""The version of the xmodalzoo package (a leaf: importing it imports nothing else)."""

__version__ = "0.1.0"
