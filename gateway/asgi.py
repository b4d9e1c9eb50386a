"""ASGI entry point for servers: `chirp gateway` serves it (with the bounded request head of gateway/server.py;
plain `uvicorn gateway.asgi:app` lacks those bounds)."""

from chirp.logging import configure
from chirp.settings import Settings
from gateway.app import create_app

settings = Settings()
configure(process="gateway", repeat_window_s=settings.log_repeat_window_s)
app = create_app(settings)
