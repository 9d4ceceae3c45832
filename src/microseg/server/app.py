"""The server's application factory: `create_app()` for `microseg serve`, tests and benches."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack, asynccontextmanager
from datetime import datetime
from pathlib import Path

from fastapi import FastAPI

from microseg import __version__
from microseg.server import auth
from microseg.server.api import ROUTERS
from microseg.server.audit import AuditGuard
from microseg.server.context import ServerContext
from microseg.server.limits import BodyLimit
from microseg.server.problems import PROBLEM_RESPONSES, install_problem_handlers
from microseg.server.ratelimit import LoginLimiter
from microseg.store import open_store

WEB_MODULE = "microseg.server.web"


def create_app(
    database_url: str | None = None,
    *,
    secure_cookies: bool = False,
    flow_store: Path | None = None,
    clock: Callable[[], datetime] | None = None,
    limiter: LoginLimiter | None = None,
    web: bool = True,
) -> FastAPI:
    """The REST API (and the web UI, when `microseg.server.web` is there) on one store.

    `database_url`: as `open_store` (default $MICROSEG_DATABASE_URL, else SQLite in the
    user data dir); the store is opened now and closed when the app shuts down."""
    resources = ExitStack()
    store = resources.enter_context(open_store(database_url))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            resources.close()

    app = FastAPI(
        title="microseg",
        version=__version__,
        summary="Microsegmentation controller: policies, workspaces, compile, check, "
        "change control, flows and the policy builder.",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        lifespan=lifespan,
        responses=PROBLEM_RESPONSES,
    )
    context = ServerContext(store=store, secure_cookies=secure_cookies, flow_store=flow_store)
    if clock is not None:
        context.clock = clock
    if limiter is not None:
        context.limiter = limiter
    app.state.context = context
    install_problem_handlers(app)
    app.add_middleware(AuditGuard)
    app.add_middleware(BodyLimit)  # outermost: before anything reads a body
    app.include_router(auth.router)
    for router in ROUTERS:
        app.include_router(router)
    if web and importlib.util.find_spec(WEB_MODULE) is not None:
        importlib.import_module(WEB_MODULE).install(app)
    return app
