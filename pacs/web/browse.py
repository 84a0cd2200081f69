"""The browse page at `/`: plain HTML, CSS and JavaScript shipped in `pacs/web/static/` (no
build step, nothing fetched from elsewhere), searching through QIDO-RS, showing thumbnails
through WADO-RS and downloading through web/download.

Room: web/. Imports Starlette and web/download. The page is answered with a Content Security
Policy that lets it load and connect to this server only; the files are found beside this
module, so an editable and a regular install serve the same folder.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from pacs.web.download import download_routes

STATIC = Path(__file__).resolve().parent / "static"
# The page runs only its own files and talks only to this server; data: is for the
# placeholder images the stylesheet draws.
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
          "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Security-Policy": POLICY, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


async def page(_request: Request) -> Response:
    """The browse page itself."""
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8",
                        headers=PAGE_HEADERS)


def browse_routes() -> list[BaseRoute]:
    """`/` (the page), `/static/…` (its script, style sheet and icon) and the downloads."""
    return [Route("/", page, methods=["GET"], name="browse"),
            Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
            *download_routes()]
