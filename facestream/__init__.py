"""facestream: face recognition over Redis Streams (camera agents → workers → results)."""

__version__ = "0.1.0"
