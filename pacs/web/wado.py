"""Placeholder.

Room: web/.
"""

from starlette.routing import Route


def wado_routes() -> list[Route]:
    return []
