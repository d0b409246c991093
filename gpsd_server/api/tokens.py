"""Who am I, and token management (admin)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Path
from fastapi.responses import Response

from gpsd_server.api.auth import Principal, Role, create_token, require
from gpsd_server.api.deps import ApiServices
from gpsd_server.api.params import NO_NUL, BadParameter
from gpsd_server.api.responses import json_response
from gpsd_server.store import tokens as store


def router(services: ApiServices) -> APIRouter:
    r = APIRouter(tags=["auth"])
    db = services.db

    @r.get("/api/me")
    async def me(who: Principal = Depends(require("viewer"))) -> dict[str, str]:
        return {"name": who.name, "role": who.role}

    @r.post("/api/tokens", status_code=201)
    async def new_token(
        name: str = Body(..., embed=True, min_length=1, max_length=100, pattern=NO_NUL),
        role: Role = Body(..., embed=True),
        _: Principal = Depends(require("admin")),
    ) -> dict[str, str]:
        """Create a token; the response is the only time it is shown."""
        async with db.connection() as conn:
            token = await create_token(conn, name=name, role=role)
        return {"name": name, "role": role, "token": token}

    @r.get("/api/tokens", dependencies=[Depends(require("admin"))])
    async def list_tokens() -> Response:
        async with db.connection() as conn:
            rows = await store.all_tokens(conn)
        return json_response(
            {
                "tokens": [
                    {
                        "id": t.id,
                        "name": t.name,
                        "role": t.role,
                        "created_at": t.created_at,
                        "revoked": t.revoked_at is not None,
                    }
                    for t in rows
                ]
            }
        )

    @r.delete("/api/tokens/{token_id}", dependencies=[Depends(require("admin"))])
    async def revoke_token(token_id: int = Path(..., ge=1, le=2**63 - 1)) -> dict[str, Any]:
        async with db.connection() as conn:
            if not await store.revoke(conn, token_id):
                raise BadParameter("token_id", "no such active token", status=404)
        # In effect before the answer: the token's next request is refused and
        # its open websockets are closed (other revocations: within token_check_s).
        await services.tokens.check()
        return {"id": token_id, "revoked": True}

    return r
