"""The one-click unsubscribe view (RFC 8058) behind each ``List-Unsubscribe`` URL.

    POST  body ``List-Unsubscribe=One-Click`` (what mail clients send; the confirmation page's
          button sends the same): the address leaves the topic, idempotently; 200.
          No CSRF token and no login: the signed token in the URL is the authority.
    GET   a confirmation page with that button; changes nothing, since mail scanners and
          link previews fetch URLs nobody clicked.
    400   a token altered, made for something else or with a retired key; nothing changes.

The token (``payload.unsubscribe_token``) is the address and topic encrypted and
authenticated with a key derived from ``SECRET_KEY``: a forwarded link does not show whose
it is, and the page shows the address masked. Links of the older form (the address signed,
readable in base64) still work while ``SEACUCUMBER_UNSUBSCRIBE_LEGACY_TOKENS`` is on. A
refused token is logged by its first 6 characters, never its signature.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from ..exceptions import InvalidUnsubscribeToken
from ..models import TopicSuppression
from ..payload import read_unsubscribe_token
from . import suppression

logger = logging.getLogger(__name__)


def masked(address: str) -> str:
    """``address`` as the page shows it (``j•••@example.com``): enough for its owner to
    recognise, too little to harvest from a forwarded link's page."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}\u2022\u2022\u2022@{domain}"


def _page(request: HttpRequest, status: int, **context: object) -> HttpResponse:
    response = render(request, "seacucumber/unsubscribe.html", context, status=status)
    response["Referrer-Policy"] = "no-referrer"  # the token stays out of other sites' logs
    response["Cache-Control"] = "no-store"
    response["X-Robots-Tag"] = "noindex"
    return response


def _one_click_value(request: HttpRequest) -> str | None:
    """The body's ``List-Unsubscribe`` field (form-encoded or multipart); None for a body
    that is neither."""
    try:
        return request.POST.get("List-Unsubscribe")
    except MultiPartParserError:
        return None


@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """Confirm (GET) or record (POST) that the token's address leaves the token's topic."""
    try:
        address, topic = read_unsubscribe_token(token)
    except InvalidUnsubscribeToken as exc:
        logger.warning("unsubscribe link refused: %s", exc)
        return _page(request, 400, invalid=True)
    if request.method != "POST":
        return _page(request, 200, address=masked(address), topic=topic)
    if _one_click_value(request) != "One-Click":
        return _page(request, 400, address=masked(address), topic=topic, bad_body=True)
    suppression.unsubscribe(address, topic, TopicSuppression.Source.ONE_CLICK)
    return _page(request, 200, address=masked(address), topic=topic, done=True)
