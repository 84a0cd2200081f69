"""Placeholder.

Room: web/.
"""

from starlette.routing import Route


def stow_routes() -> list[Route]:
    return []
