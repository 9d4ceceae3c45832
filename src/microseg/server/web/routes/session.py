"""Signing in and out of the UI (the API's session cookie, rate-limited login)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from microseg.server.auth import login as start_session
from microseg.server.auth import logout as end_session
from microseg.server.problems import ApiProblem
from microseg.server.web.errors import WebRoute
from microseg.server.web.identity import Viewer
from microseg.server.web.render import page

router = APIRouter(route_class=WebRoute)


def _next(target: str) -> str:
    """Only a path of this site: never an absolute URL (an open redirect). Browsers read a
    backslash in a URL as a slash and drop tabs and newlines from it (WHATWG URL Standard,
    "basic URL parser"), so `/\\evil.example` and `/<TAB>/evil.example` are
    `//evil.example`, another site: a target with a backslash, a space or a control character
    is refused too (a path of this site has them percent-encoded)."""
    if (
        not target.startswith("/")
        or target.startswith("//")
        or any(char == "\\" or char <= " " or char == "\x7f" for char in target)
    ):
        return "/"
    return target


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return page(request, "login.html", "", title="Sign in", next=_next(next), username="")


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    username, password = str(form.get("username") or ""), str(form.get("password") or "")
    target = _next(str(form.get("next") or "/"))
    response = RedirectResponse(target, status_code=303)
    try:
        start_session(request, response, username, password)
    except ApiProblem as problem:
        answer = page(
            request,
            "login.html",
            "",
            status_code=problem.status,
            title="Sign in",
            next=target,
            username=username,
            error=problem.detail,
        )
        answer.headers.update(problem.headers)
        return answer
    return response


@router.post("/logout")
def logout(request: Request, _: Viewer) -> Response:
    response = RedirectResponse("/login", status_code=303)
    end_session(request, response)
    return response
