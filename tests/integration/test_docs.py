"""The generated API documents validate: OpenAPI with openapi-spec-validator, AsyncAPI with @asyncapi/parser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import orjson
import pytest
from openapi_spec_validator import validate

from chirp.settings import Settings
from ops.dlq import DECISIONS_TOPIC
from ops.docs import DOCS_DIR, app_routes, asyncapi_schema, openapi_schema
from schemas import topics

PARSER_VERSION = "3.6.6"
PARSE = """
const { Parser } = require('@asyncapi/parser');
const fs = require('fs');
(async () => {
  const { document, diagnostics } = await new Parser().parse(fs.readFileSync(process.argv[2], 'utf8'));
  const errors = diagnostics.filter((d) => d.severity === 0);
  console.log(JSON.stringify({ ok: !!document && errors.length === 0, errors }));
})();
"""


@pytest.fixture(scope="session")
def asyncapi_parser(settings: Settings) -> Path:
    """@asyncapi/parser installed once under the state directory (outside the repo); reused when present."""
    prefix = settings.home / "node"
    installed = prefix / "node_modules" / "@asyncapi" / "parser" / "package.json"
    if not installed.exists() or json.loads(installed.read_text())["version"] != PARSER_VERSION:
        npm = shutil.which("npm")
        assert npm, "npm is needed to validate the AsyncAPI document"
        subprocess.run(
            [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", f"@asyncapi/parser@{PARSER_VERSION}"],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return prefix


def parse_asyncapi(prefix: Path, document: dict, tmp_path: Path) -> dict:
    path = tmp_path / "asyncapi.json"
    path.write_bytes(orjson.dumps(document))
    script = prefix / "parse-asyncapi.js"
    script.write_text(PARSE)
    done = subprocess.run(
        ["node", str(script), str(path)], cwd=prefix, capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_openapi_document_is_valid_and_lists_every_route() -> None:
    document = openapi_schema(app_routes())
    validate(document)
    assert {"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/asyncapi.json", "/metrics"} <= set(
        document["paths"]
    )
    assert document["paths"]["/healthz"]["get"]["summary"]


def test_asyncapi_document_is_valid_and_names_every_topic(asyncapi_parser: Path, tmp_path: Path) -> None:
    document = asyncapi_schema()
    result = parse_asyncapi(asyncapi_parser, document, tmp_path)
    assert result["ok"], result["errors"]
    addresses = {c["address"] for c in document["channels"].values()}
    assert {t.name for t in topics.ALL} | {DECISIONS_TOPIC} <= addresses
    message = document["components"]["messages"][f"{topics.POST_CREATED.name}:publish:Message"]
    assert message["payload"] == {"$ref": "#/components/schemas/PostCreated"}


def test_committed_documents_are_valid(asyncapi_parser: Path, tmp_path: Path) -> None:
    validate(orjson.loads((DOCS_DIR / "openapi.json").read_bytes()))
    result = parse_asyncapi(asyncapi_parser, orjson.loads((DOCS_DIR / "asyncapi.json").read_bytes()), tmp_path)
    assert result["ok"], result["errors"]


async def test_gateway_serves_the_documents_and_a_page(client: httpx.AsyncClient) -> None:
    openapi = await client.get("/openapi.json")
    assert openapi.status_code == 200
    validate(openapi.json())
    asyncapi = await client.get("/docs/asyncapi.json")
    assert asyncapi.status_code == 200 and asyncapi.json()["asyncapi"].startswith("3.")
    page = await client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<script" not in page.text
    # The site's CSP (style-src 'self') would block an inline style: the page links a stylesheet instead.
    assert "<style" not in page.text and " style=" not in page.text
    assert (await client.get("/static/docs.css")).status_code == 200
    # The AsyncAPI document served is the committed one: the app's topics, not the tests' namespaced copies.
    assert "/api/notifications" in page.text and "post-created" in page.text


def test_the_consumer_guide_shows_the_mentions_consumer_verbatim() -> None:
    guide = (DOCS_DIR / "adding-a-consumer.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", guide, flags=re.S)
    source = (DOCS_DIR.parent / "consumers" / "mentions.py").read_text()
    assert source in blocks, "docs/adding-a-consumer.md must quote consumers/mentions.py exactly"
