"""Every route the server exposes, from MLflow's Flask app and its FastAPI app, for guards and tests."""

from __future__ import annotations

import re
from collections.abc import Iterator


def native_routes(fastapi_app) -> Iterator[tuple[str, set[str]]]:
    """(path, methods) of FastAPI's own routes, prefixes of included routers applied; the Flask mount left out."""
    from starlette.routing import Mount

    for route in fastapi_app.routes:
        if isinstance(route, Mount):
            continue
        if hasattr(route, "effective_route_contexts"):
            for context in route.effective_route_contexts():
                yield context.path, set(getattr(context.original_route, "methods", None) or {"GET"})
        else:
            yield route.path, set(getattr(route, "methods", None) or {"GET"})


def native_route_matches(fastapi_app, scope) -> bool:
    """True when FastAPI itself serves the request; everything else falls through to the Flask mount."""
    from starlette.routing import Match, Mount

    return any(route.matches(scope)[0] is Match.FULL for route in fastapi_app.routes if not isinstance(route, Mount))


def example_path(template: str) -> str:
    """A concrete path for a route template: Flask `<int:id>` and FastAPI `{id:path}` become samples."""
    path = re.sub(r"<(?:int|float):[^>]+>", "1", template)
    path = re.sub(r"<(?:path:)?[^>]+>", "0123456789abcdef0123456789abcdef", path)
    return re.sub(r"\{[^}]+\}", "0123456789abcdef0123456789abcdef", path)


def flask_routes(flask_app) -> Iterator[tuple[str, str]]:
    for rule in flask_app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            yield rule.rule, method


def fastapi_routes(fastapi_app) -> Iterator[tuple[str, str]]:
    for path, methods in native_routes(fastapi_app):
        for method in sorted(methods - {"HEAD", "OPTIONS"}):
            yield path, method
