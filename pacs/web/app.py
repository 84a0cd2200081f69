"""The ASGI application: DICOMweb routes under /dicom-web, WADO-URI at /wado, the browse page
at / (web/browse), HTTP access control and CORS around everything.

Room: web/. Imports Starlette, services/ and the route modules of web/.

Extending it: pass more routes to `create_app`, e.g. a static folder
`Mount("/extra", app=StaticFiles(directory=folder, html=True), name="extra")` or a `Route`
(they come before the browse page's, so they may replace `/`). They get the same access
control (GET/HEAD need `read`, POST needs `store`), CORS and request log as DICOMweb.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pacs.services.context import Services
from pacs.services.http_access import BadCredentials, HttpAccessPolicy
from pacs.web.common import DICOMWEB_PREFIX
from pacs.web.errors import error_response
from pacs.web.qido import qido_routes

log = logging.getLogger("pacs.web")
requests_log = logging.getLogger("pacs.operations")
_CHALLENGE = 'Basic realm="minipacs", charset="UTF-8", Bearer realm="minipacs"'


def dicomweb_routes() -> list[BaseRoute]:
    """Every DICOMweb resource, relative to the DICOMweb root."""
    from pacs.web.stow import stow_routes
    from pacs.web.wado import wado_routes

    return [*qido_routes(), *stow_routes(), *wado_routes()]


class AccessMiddleware:
    """HTTP users and permissions: GET/HEAD need `read`, POST needs `store`; one log line
    per request with the user, the operation and the status."""

    def __init__(self, app: ASGIApp, policy: HttpAccessPolicy):
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        method = scope["method"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        status: dict[str, Any] = {"code": 0, "user": "anonymous"}

        async def send_logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            try:
                caller = self.policy.caller(headers.get("authorization"))
            except BadCredentials as exc:
                refusal = error_response(401, str(exc), {"WWW-Authenticate": _CHALLENGE})
                await refusal(scope, receive, send_logged)
                return
            status["user"] = caller.name
            scope.setdefault("state", {})["caller"] = caller
            needed = "store" if method in ("POST", "PUT", "DELETE") else "read"
            if method != "OPTIONS" and not caller.may(needed):
                if caller.authenticated:
                    refusal = error_response(403, f"{caller.name} may not {needed} here")
                else:
                    refusal = error_response(401, f"credentials needed to {needed}",
                                             {"WWW-Authenticate": _CHALLENGE})
                await refusal(scope, receive, send_logged)
                return
            await self.app(scope, receive, send_logged)
        finally:
            code = status["code"]
            client = scope.get("client") or ("", 0)
            entry = {"http_user": status["user"], "peer_address": f"{client[0]}:{client[1]}",
                     "operation": f"{method} {scope.get('path', '')}", "status": code,
                     "duration_ms": round((time.monotonic() - started) * 1000, 2),
                     **scope.get("state", {}).get("log_fields", {})}
            text = " ".join(f"{key}={value}" for key, value in entry.items()
                            if value not in ("", None))
            requests_log.log(logging.INFO if 0 < code < 400 else logging.WARNING, text,
                             extra={"fields": entry})


def create_app(services: Services, extra_routes: Sequence[BaseRoute] = ()) -> ASGIApp:
    """The whole HTTP face over `services`: DICOMweb, WADO-URI, `extra_routes`, the browse page.

    CORS is the outermost layer, so preflights are answered before access control and every
    response, errors included, carries the CORS headers.
    """
    from pacs.web.browse import browse_routes
    from pacs.web.wado_uri import wado_uri_routes

    settings = services.settings
    routes: list[BaseRoute] = [Mount(DICOMWEB_PREFIX, routes=dicomweb_routes()),
                               *wado_uri_routes(), *extra_routes, *browse_routes()]
    app = Starlette(routes=routes)
    app.state.services = services
    policy = HttpAccessPolicy.from_settings(settings)
    wrapped: ASGIApp = AccessMiddleware(app, policy)
    if settings.http_cors_origins:
        wrapped = CORSMiddleware(
            wrapped, allow_origins=list(settings.http_cors_origins),
            allow_methods=["GET", "HEAD", "POST", "OPTIONS"], allow_headers=["*"],
            allow_credentials=True, expose_headers=["Warning", "Content-Location", "Location"],
            max_age=600)
    return wrapped
