"""The operators' web page (`facestream web`): cameras, live feed, charts, gallery, dead letters.

Only the config section is imported here, so `facestream.config` can compose `WebSettings`
without importing the app (which needs the config itself); the app is `facestream.web.app`.
"""

from .settings import WebSettings, hash_password, verify_password

__all__ = ["WebSettings", "hash_password", "verify_password"]
