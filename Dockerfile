# One image for the gateway and every consumer; the command picks the process (see compose.yaml).
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml requirements.lock README.md ./
COPY chirp chirp
COPY ops ops
COPY domain domain
COPY schemas schemas
COPY producers producers
COPY consumers consumers
COPY gateway gateway
COPY store store
# The gateway serves the committed AsyncAPI document from docs/: the code runs from /app (an editable install).
COPY docs docs
RUN pip install --no-cache-dir -c requirements.lock -e . && useradd --create-home chirp
# The Open Graph PNG, rendered from its SVG where the package was installed (link previewers do not take SVG).
RUN python -m ops.og_image && apt-get purge -y librsvg2-bin && rm -rf /var/lib/apt/lists/*
USER chirp
EXPOSE 8000 9400
CMD ["chirp", "gateway"]
