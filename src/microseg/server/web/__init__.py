"""The web UI: server-rendered pages (Jinja2) with htmx, mounted into the API's app.

    from microseg.server.web import install
    install(app)        # the pages at /, /policy, /workspaces, /changes, ... and /static

htmx and its server-sent-events extension are vendored from their npm packages
(`static/vendor/VERSIONS`); nothing is fetched at run time. Every page reads and writes
through the same functions as the CLI (`microseg.store`, `microseg.deploy`,
`microseg.builder`, `microseg.evaluate`, `microseg.monitor`).
"""

from microseg.server.web.routes import install, router

__all__ = ["install", "router"]
