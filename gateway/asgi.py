"""ASGI entry point for servers: `uvicorn gateway.asgi:app`."""

from chirp.logging import configure
from chirp.settings import Settings
from gateway.app import create_app

settings = Settings()
configure(process="gateway", repeat_window_s=settings.log_repeat_window_s)
app = create_app(settings)
