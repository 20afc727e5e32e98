"""The operators' web page (`facestream web`): cameras, live feed, charts, gallery, dead letters."""

from .app import build_server, create_app, serve
from .settings import WebSettings, hash_password, verify_password

__all__ = ["WebSettings", "build_server", "create_app", "hash_password", "serve", "verify_password"]
