"""The web UI: server-rendered pages (Jinja2), forms that work without JavaScript, live updates over SSE."""
