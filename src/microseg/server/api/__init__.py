"""The REST API's routers, one module per area; `create_app` includes every one of `ROUTERS`."""

from __future__ import annotations

from fastapi import APIRouter

from microseg.server.api import revisions, users, workspaces

ROUTERS: tuple[APIRouter, ...] = (revisions.router, workspaces.router, users.router)
