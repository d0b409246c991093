"""Who am I, and token management (admin)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Path
from fastapi.responses import Response

from gpsd_server.api.auth import COMPANY, Principal, Role, create_token, require
from gpsd_server.api.deps import ApiServices
from gpsd_server.api.params import NO_NUL, BadParameter
from gpsd_server.api.responses import json_response
from gpsd_server.store import tokens as store


def router(services: ApiServices) -> APIRouter:
    r = APIRouter(tags=["auth"])
    db = services.db

    may_ack = services.config.desk.company_may_ack

    @r.get("/api/me")
    async def me(who: Principal = Depends(require("viewer", company="city"))) -> dict[str, Any]:
        """Who the token belongs to; a company account also gets its company,
        how many vehicles it sees and whether it may acknowledge their alerts."""
        body: dict[str, Any] = {"name": who.name, "role": who.role}
        if who.role == COMPANY:
            body.update(company=who.company, vehicles=len(who.scope or ()), may_ack=may_ack)
        return body

    @r.post("/api/tokens", status_code=201)
    async def new_token(
        name: str = Body(..., embed=True, min_length=1, max_length=100, pattern=NO_NUL),
        role: Role = Body(..., embed=True),
        company: str | None = Body(
            None,
            embed=True,
            min_length=1,
            max_length=200,
            pattern=NO_NUL,
            description="role company: the registry's company the token is bound to",
        ),
        _: Principal = Depends(require("admin")),
    ) -> dict[str, Any]:
        """Create a token; the response is the only time it is shown. A
        ``company`` token needs a ``company`` known to the vehicle registry."""
        if role == COMPANY and not company:
            raise BadParameter("company", "required for role company")
        if role != COMPANY and company:
            raise BadParameter("company", f"only a company token takes a company (role {role} sees every vehicle)")
        if company and company not in services.directory.companies():
            raise BadParameter("company", f"no vehicle of the registry belongs to {company!r}")
        async with db.connection() as conn:
            token = await create_token(conn, name=name, role=role, company=company)
        return {"name": name, "role": role, "company": company, "token": token}

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
                        "company": t.company,
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
