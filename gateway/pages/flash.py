"""Status messages that survive a form's redirect ("Post deleted.", "Profile saved."), shown once on the next page.

The cookie names one of the messages below and, for some, a handle; the page shows the server's own text for it,
so a forged or tampered cookie can show nothing but one of these sentences (an unknown key or a handle that is not
one is ignored). That is why it needs no signature. It lives a minute and is cleared by the page that shows it.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from domain.text import is_handle
from gateway.state import state_of

FLASH_COOKIE = "chirp_flash"
FLASH_TTL_S = 60
MESSAGES = {
    "posted": "Your post is live.",
    "replied": "Your reply is posted.",
    "deleted": "Post deleted.",
    "edited": "Your edit is saved.",
    "reported": "Thanks: the moderators will look at your report.",
    "saved": "Profile saved.",
    "followed": "You follow @{handle} now.",
    "unfollowed": "You no longer follow @{handle}.",
    "muted": "You muted @{handle}: their posts no longer show for you.",
    "unmuted": "You unmuted @{handle}.",
    "blocked": "You blocked @{handle}: neither of you sees the other's posts.",
    "unblocked": "You unblocked @{handle}.",
    "logged-in": "Logged in as @{handle}.",
    "logged-out": "Logged out. See you soon.",
    "account-deleted": "Your account is deleted. Goodbye.",
}


def flash(request: Request, response: Response, key: str, handle: str = "") -> None:
    """Have the page this response leads to say `MESSAGES[key]`."""
    assert key in MESSAGES, key
    secure = state_of(request).settings.public_url.startswith("https://")  # like the session cookies
    value = f"{key}:{handle}"
    response.set_cookie(
        FLASH_COOKIE, value, max_age=FLASH_TTL_S, path="/", httponly=True, samesite="lax", secure=secure
    )


def flash_text(request: Request) -> str:
    """The message this request's cookie names ('' for none, an unknown key or a malformed handle)."""
    key, _, handle = request.cookies.get(FLASH_COOKIE, "").partition(":")
    template = MESSAGES.get(key)
    if template is None or ("{handle}" in template and not is_handle(handle)):
        return ""
    return template.format(handle=handle)


def clear_flash(request: Request, response: Response) -> None:
    """Forget the message once a page has shown it."""
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path="/", httponly=True, samesite="lax")
