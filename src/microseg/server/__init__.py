"""`microseg serve`: the REST API (FastAPI, OpenAPI at /api/openapi.json) and the web UI,
one application made by `create_app()`.

Layout:

    server/app.py         create_app(database_url, ...): the FastAPI app on one open store
    server/context.py     ServerContext (store, clock, settings): server_context(request)
    server/auth.py        tokens, cookie sessions + CSRF, roles, login/logout helpers
    server/audit.py       audited(request, principal, action, target, detail)
    server/problems.py    errors as RFC 9457 problem documents (ApiProblem, MicrosegError)
    server/api/           REST routers, one module per area, listed in api.ROUTERS
    server/web/           the web UI (Jinja2 + htmx): its own package

How to add an API route: in a module of `server/api/`, declare the least role the route
needs as a parameter and use the store through the context; record what a write changed:

    from microseg.server.auth import Editor, Viewer
    from microseg.server.audit import audited
    from microseg.server.context import server_context

    @router.get("/things")
    def list_things(principal: Viewer, request: Request) -> list[Thing]:
        return server_context(request).store....

    @router.post("/things")
    def add_thing(body: NewThing, principal: Editor, request: Request) -> Thing:
        ...                                       # raise MicrosegError / ApiProblem on bad input
        audited(request, principal, "thing.add", f"thing/{name}", {"field": value})

Raise `MicrosegError` (or its subclasses: NotFound -> 404, conflicts -> 409, PolicyError ->
422 with one `errors` entry per problem naming object and field) or `ApiProblem(status,
detail)`; never build an error response by hand. Routes that call the store are plain
`def` (FastAPI runs them in a thread pool): the store is synchronous.

How to add a page (the web UI): `server/web/__init__.py` defines `install(app: FastAPI)`,
which `create_app` calls when the package exists; it includes the UI's router (and mounts
its static files). A page depends on `require("viewer")` like an API route; for a page
that should redirect to the login form instead of answering 401, call
`await authenticate(request)` and check for None. The login form posts the user name and
password to the UI's own route, which calls `auth.login(request, response, name,
password)` (rate-limited, sets the session cookie) and `auth.logout(request, response)`.

How auth works: API clients send `Authorization: Bearer <token>`. Browsers hold the
`microseg_session` cookie (HttpOnly, SameSite=Strict; Secure under TLS). Every write
(POST/PUT/PATCH/DELETE) made with the cookie must carry the CSRF token, in the
`X-CSRF-Token` header or a `csrf_token` form field, or it gets 403. Templates get the
token with `auth.csrf_token(request)`; with htmx put it on <body>:
`hx-headers='{"X-CSRF-Token": "{{ csrf }}"}'`. Roles, lowest first: viewer (read), editor
(workspaces, imports, changes), approver (approve, run, roll back), admin (users, tokens,
devices, settings); each may do what the roles before it may. Writing devices or monitor
nodes (in a workspace or an import) also needs admin: call `auth.check_sections(principal,
sections)` before such a write.
"""

from microseg.server.app import create_app

__all__ = ["create_app"]
