"""The web UI's routes (defined in gateway/pages/), picked up by the gateway's route discovery."""

from gateway.pages.routes import routes

__all__ = ["routes"]
