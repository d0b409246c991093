"""schemathesis over the app's own OpenAPI description, every check on: no
operation answers 5xx, and every answer matches the description (status
codes, content types, response schemas, auth, methods), valid data is
accepted and invalid data refused; with an admin token (valid and invalid
data) or without one.

What a schema cannot say is configured, per operation and nothing more: a
time range must be ordered and within ``[history] max_range_days``, and an
upload must make a city that loads, and a company token needs a company of the
vehicle registry (the other roles none). Schema-valid requests that break those
are refused 400/413/422, which the positive-data check is told to expect
for those operations.

The server runs in the pytest event loop, so the synchronous schemathesis
calls run in a worker thread. Destructive operations are fuzzed too, against
the session's test database and a temporary geofences folder; the only
guard is that the fuzzer cannot revoke the tokens that existed before it ran.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig

from gpsd_server.api import geofences
from tests.api.test_geofences import has_upload_routes
from tests.fixtures.server import RunningServer
from tests.fixtures.services import REPO

load_all_checks()
ALL_CHECKS: list[Any] = [c for c in CHECKS.get_all() if callable(c) and not isinstance(c, type)]
CONSTRAINED = [
    # start < end and end - start <= the cap: not expressible in OpenAPI
    r"^/api/vehicles/\{vehicle_id\}/(track|stops|trips)$", r"^/api/zones/\{zone_id\}/inside$",
    r"^/api/reports/(violations|patrol-coverage|dispatches|cases)$",
    # the whole city must load
    r"^/api/geofences/files/\{name\}$", r"^/api/vehicles/registry$", r"^/api/geofences/reload$",
    # a company token needs a company of the vehicle registry, the other roles none
    r"^/api/tokens$",
]  # fmt: skip
ACCEPTED = ["2xx", "401", "403", "404", "409", "429"]
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED}},
        # Unknown query parameters are ignored (README): not generated as "invalid". The
        # token is the test's (headers=); ignored_auth checks that none is refused.
        "generation": {"allow-extra-parameters": False, "with-security-parameters": False},
        "operations": [
            {
                "include-path-regex": pattern,
                "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "400", "413", "422"]}},
            }
            for pattern in CONSTRAINED
        ]
        + [
            {  # filing a case: the category must be one of the configured [cases] categories
                "include-path-regex": r"^/api/cases$",
                "include-method": "POST",
                "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "400"]}},
            }
        ],
    }
)
MAX_EXAMPLES = {GenerationMode.POSITIVE: 20, GenerationMode.NEGATIVE: 12}
ANONYMOUS_EXAMPLES = 5
BUDGET_S = 180.0  # every check on re-sends some requests; a loaded 2-core machine


@pytest.fixture
def server_overrides(tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "geofences"
    shutil.copytree(REPO / "geofences", folder)
    return {"GPSD_GEOFENCES__DIR": str(folder)}


def fuzz(
    schema: schemathesis.BaseSchema,
    base_url: str,
    headers: dict[str, str],
    examples: dict[GenerationMode, int],
    protected_tokens: set[int],
) -> list[str]:
    """Every operation in every mode; returns one line per failing operation."""
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode, n in examples.items():

            @settings(
                max_examples=n,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                token_id = (case.path_parameters or {}).get("token_id")
                if case.method == "DELETE" and token_id in protected_tokens:
                    case.path_parameters["token_id"] = 2**62  # never the test's own tokens
                response = case.call(base_url=base_url, headers=headers, timeout=30)
                case.validate_response(response, checks=ALL_CHECKS, headers=headers)

            try:
                run()
            except Unsatisfiable:
                pass  # no parameter to make invalid (negative mode)
            except (Exception, BaseExceptionGroup) as exc:  # collected and reported together below
                failures.append(f"{operation.label} [{mode.value}]: {str(exc)[:1500]}")
    return failures


async def test_no_server_errors(server: RunningServer) -> None:
    app = server.server.app
    if not has_upload_routes(app):
        app.include_router(geofences.router(server.server))
    admin = server.headers("admin")
    async with httpx.AsyncClient(base_url=server.http, headers=admin) as http:
        description = (await http.get("/openapi.json")).json()
        r = await http.post("/api/tokens", json={"name": "schemathesis", "role": "admin"})
        fuzz_headers = {"Authorization": f"Bearer {r.json()['token']}"}
        protected = {t["id"] for t in (await http.get("/api/tokens")).json()["tokens"]}
    schema = schemathesis.openapi.from_dict(description, config=CONFIG)
    assert len(list(schema.get_all_operations())) >= 25

    started = time.monotonic()
    failures = await asyncio.to_thread(fuzz, schema, server.http, fuzz_headers, MAX_EXAMPLES, protected)
    failures += await asyncio.to_thread(
        fuzz, schema, server.http, {}, {GenerationMode.POSITIVE: ANONYMOUS_EXAMPLES}, protected
    )
    elapsed = time.monotonic() - started
    assert not failures, "\n\n".join(failures)
    assert elapsed < BUDGET_S, f"schemathesis run took {elapsed:.0f} s"

    # the fuzzer could not lock the test out, and the server still serves
    async with httpx.AsyncClient(base_url=server.http) as http:
        assert (await http.get("/api/me", headers=admin)).status_code == 200
        assert (await http.get("/api/me", headers=fuzz_headers)).status_code == 200


async def test_nul_characters_are_bad_input(server: RunningServer) -> None:
    """Found by the fuzzer: PostgreSQL text cannot hold NUL, which was a 500."""
    async with httpx.AsyncClient(base_url=server.http, headers=server.headers("admin")) as http:
        r = await http.post("/api/tokens", json={"name": "a\x00b", "role": "viewer"})
        assert r.status_code == 400 and r.json()["parameter"] == "name"
        r = await http.get("/api/alerts", params={"vehicle_id": "a\x00b"})
        assert r.status_code == 400, r.text
        r = await http.get("/api/vehicles/a%00b/track")
        assert 400 <= r.status_code < 500, r.text
