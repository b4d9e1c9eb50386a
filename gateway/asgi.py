"""ASGI entry point for servers: `uvicorn gateway.asgi:app`."""

from chirp.logging import configure
from chirp.settings import Settings
from gateway.app import create_app

configure(process="gateway")
app = create_app(Settings())
