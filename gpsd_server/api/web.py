"""The control-room page: ``/`` (index.html), ``/static/...`` (its modules and
styles, shipped in the package) and ``/vendor/...`` (Leaflet from
web/node_modules, installed by tools/web_setup.sh; never committed, no CDN),
and the security headers every response carries.

Static files are public: the page asks for the token itself and every API
call it makes carries it. A file that is not there is a 404, also when
web/node_modules is missing altogether.

Headers: every response gets ``X-Content-Type-Options: nosniff``,
``X-Frame-Options: DENY`` and ``Referrer-Policy: no-referrer``; the page and
its files also a Content-Security-Policy that allows scripts only from this
server (the page has no inline script), images from here and the configured
basemap, connections (API, websockets) only to this server, and no framing.
Inline *styles* stay allowed: the page's DOM helper sets ``style``
attributes (a colour swatch, a timeline mark), which carry no script.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent.parent / "web"
VENDOR_DIR = Path(__file__).resolve().parent.parent.parent / "web" / "node_modules"

# Revalidate on every load (cheap on a LAN: 304s), so an upgrade is never half-applied.
_NO_CACHE = {"Cache-Control": "no-cache"}
COMMON_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
PAGE_PREFIXES = ("/static/", "/vendor/")


def tile_source(tile_url: str) -> str:
    """The CSP source of a Leaflet tile URL template ('' when none is configured)."""
    if not tile_url:
        return ""
    parts = urlsplit(tile_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return ""
    host = re.sub(r"\{[^}]*\}", "*", parts.netloc)
    labels = host.split(".")
    if "*" in "".join(labels[1:]) or (labels[0] != "*" and "*" in labels[0]):
        return f"{parts.scheme}:"  # a placeholder CSP cannot express: the scheme alone
    return f"{parts.scheme}://{host}"


def content_security_policy(*tile_urls: str) -> str:
    """The page's policy; images also from the hosts of the basemaps offered."""
    tiles = " ".join(sorted({src for u in tile_urls if (src := tile_source(u))}))
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self' 'unsafe-inline'",
            f"img-src 'self' data: blob:{' ' + tiles if tiles else ''}",
            "connect-src 'self'",
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


class SecurityHeaders:
    """Pure ASGI middleware (streaming responses pass through untouched)."""

    def __init__(self, app: ASGIApp, csp: str) -> None:
        self.app = app
        self.csp = csp.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        page = path == "/" or path.startswith(PAGE_PREFIXES)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                headers.extend(COMMON_HEADERS)
                if page:
                    headers.append((b"content-security-policy", self.csp))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


class _StaticNoCache(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(_NO_CACHE)
        return response


def mount_web(
    app: FastAPI, *, static_dir: Path = STATIC_DIR, vendor_dir: Path = VENDOR_DIR, tile_urls: Sequence[str] = ()
) -> None:
    """Serve the page at ``/`` and its files at ``/static`` and ``/vendor``."""
    index = static_dir / "index.html"
    if not index.is_file():
        raise FileNotFoundError(f"control-room page missing: {index}")
    app.add_middleware(SecurityHeaders, csp=content_security_policy(*tile_urls))

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return FileResponse(index, media_type="text/html; charset=utf-8", headers=_NO_CACHE)

    app.mount("/static", _StaticNoCache(directory=static_dir), name="static")
    if vendor_dir.is_dir():
        if not (vendor_dir / "leaflet" / "dist" / "leaflet.js").is_file():
            log.warning("map library missing in %s: run tools/web_setup.sh (npm ci in web/)", vendor_dir)
        app.mount("/vendor", _StaticNoCache(directory=vendor_dir), name="vendor")
    else:
        log.warning("map library folder %s missing: run tools/web_setup.sh (npm ci in web/)", vendor_dir)

        @app.get("/vendor/{path:path}", include_in_schema=False)
        async def no_vendor(path: str) -> Response:
            return JSONResponse({"error": "not found: run tools/web_setup.sh", "parameter": "path"}, 404)
