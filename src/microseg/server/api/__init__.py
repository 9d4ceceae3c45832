"""The REST API's routers, one module per area; `create_app` includes every one of `ROUTERS`."""

from __future__ import annotations

from fastapi import APIRouter

from microseg.server.api import changes, evaluate, flows, monitor, revisions, users, workspaces

ROUTERS: tuple[APIRouter, ...] = (
    revisions.router,
    workspaces.router,
    evaluate.router,
    flows.router,
    changes.router,
    monitor.router,
    users.router,
)
