"""The UI's routes, one module per area of the "Network Security" section."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from microseg.server.web.routes import (
    builder,
    changes,
    dashboard,
    insight,
    policy,
    session,
    workspaces,
)

AREAS = (session, dashboard, policy, workspaces, changes, builder, insight)
router = APIRouter(include_in_schema=False)
for module in AREAS:
    router.include_router(module.router)


def install(app: FastAPI) -> None:
    """Mount the pages and their static files (stylesheet, vendored htmx) into `app`."""
    app.mount("/static", StaticFiles(packages=[("microseg.server.web", "static")]), name="static")
    app.include_router(router)
