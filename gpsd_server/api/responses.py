"""JSON bodies encoded by :mod:`gpsd_server.wire`, so HTTP and the websockets
share one time format (FastAPI's own encoder would write ``+00:00``)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import Response

from gpsd_server import wire


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(wire.encode(body), status_code=status, media_type="application/json", headers=headers)
