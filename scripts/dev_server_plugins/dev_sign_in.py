"""Loaded by ./dev-server.sh only (`--plugins-dir`): a sign-in link for root that
works every time, for as long as this dev server runs.

Datasette's own `--root` link works once, so a second browser, a private window
or a signed-out session needed a restart. This link carries a key that
dev-server.sh makes afresh for each run (DEV_SIGN_IN_KEY), so no page or other
site can sign anyone in without having been shown it.
"""

import os
import secrets

from datasette import Forbidden, Response, hookimpl


async def sign_in(request, datasette):
    """GET /-/dev-sign-in?key=...: sign in as root and go to the home page."""
    key = os.environ.get("DEV_SIGN_IN_KEY", "")
    if not key or not secrets.compare_digest(request.args.get("key", ""), key):
        raise Forbidden("Wrong or missing key: use the sign-in link dev-server.sh printed")
    response = Response.redirect(datasette.urls.instance())
    datasette.set_actor_cookie(response, {"id": "root"})
    return response


@hookimpl
def register_routes():
    """Only the sign-in route."""
    return [(r"^/-/dev-sign-in$", sign_in)]
