"""Placeholder.

Room: web/.
"""

from starlette.routing import Route


def wado_uri_routes() -> list[Route]:
    return []
