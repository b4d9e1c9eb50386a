"""A path parameter that names nothing that can exist (a NUL, a control character, 300 characters) never gives a
500: ids and handles are a 404, a tag with a NUL a 422 (a tag of other characters is an empty list)."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.helpers import login, unique_handle

PATHS = [
    ("GET", "/api/posts/{x}"),
    ("DELETE", "/api/posts/{x}"),
    ("GET", "/api/posts/{x}/replies"),
    ("GET", "/api/users/{x}"),
    ("GET", "/api/users/{x}/posts"),
    ("GET", "/api/users/{x}/followers"),
    ("POST", "/api/users/{x}/follow"),
    ("GET", "/api/tags/{x}"),
    ("GET", "/api/tags/{x}/posts"),
    ("GET", "/posts/{x}"),
    ("GET", "/@{x}"),
    ("GET", "/tags/{x}"),
    ("GET", "/fragments/posts/{x}"),
]


_VIEWER: dict[str, str] = {}  # one login for the module's 52 cases: each case is one request, not two


async def _viewer(client: httpx.AsyncClient) -> dict[str, str]:
    if not _VIEWER:
        _VIEWER.update(await login(client, unique_handle("path")))
    return _VIEWER


@pytest.mark.parametrize(("method", "path"), PATHS)
@pytest.mark.parametrize("value", ["%00", "a%00b", "%1B", "x" * 300])
async def test_an_impossible_path_parameter_is_no_server_error(
    client: httpx.AsyncClient, method: str, path: str, value: str
) -> None:
    headers = await _viewer(client)
    response = await client.request(method, path.format(x=value), headers=headers)
    assert response.status_code < 500, (method, path, value, response.status_code, response.text[:200])
    if "tags" not in path or "%00" in value:
        assert response.status_code in (404, 422), (method, path, value, response.status_code)
