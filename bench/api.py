"""REST API benchmark: a bounded load on loopback against `microseg serve`'s app, next to a
minimal FastAPI endpoint served the same way in the same run (the framework's ceiling).

Two uvicorn processes on 127.0.0.1 (one worker each, as `microseg serve` runs): microseg's
app on a fresh SQLite store holding the seed lab (revision 1) and a generated 5,000-rule
policy (revision 2, bench/compile.py's generator), with the seed's sessions as its flow
store; and a FastAPI app whose one route returns a constant JSON object. For each endpoint,
`--clients` concurrent clients (asyncio, httpx2, one keep-alive connection each) send
requests back to back for `--seconds`; every response must be 200 (any other is counted as
an error and the script exits 1). Latency is per request, client side.

Endpoints (the main reads; every one authenticated with an API token, as a script is):
revisions (the log), objects (a revision's whole policy document), compile (one device),
check (one connection), sessions (a page of 100), on the seed and on the 5,000-rule policy.

Prints one JSON line: per endpoint requests/s, p50 and p99 in ms, errors, and `vs_minimal`
(its requests/s over the minimal endpoint's). The client runs in this process, on the same
2-core machine as the server: the minimal endpoint's figure is what client plus framework
reach here, the ceiling the others are compared with.
Run: `python bench/api.py [--clients 50] [--seconds 30]`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # measure this checkout

SWITCH = "andreasm-720xp-home"
BIG_RULES = 5000


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _big_policy() -> dict:
    spec = importlib.util.spec_from_file_location("bench_compile", ROOT / "bench" / "compile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    document: dict = module.microseg_policy(BIG_RULES)
    return document


def prepare(directory: Path) -> tuple[str, str]:
    """A store with the seed (rev 1) and the big policy (rev 2); (its URL, an admin token)."""
    from microseg.model import PolicySet
    from microseg.policyfile import load_policy
    from microseg.server import accounts
    from microseg.store import open_store

    url = f"sqlite:///{directory / 'bench.db'}"
    with open_store(url) as store:
        store.import_policy(load_policy(ROOT / "examples" / "home-lab.yaml"), "bench", "seed")
        store.import_policy(PolicySet.model_validate(_big_policy()), "bench", "5000 rules")
        accounts.add_user(store, "bench", "viewer", "bench-password-not-secret")
        return url, accounts.create_token(store, "bench", "bench")[1]


def serve(which: str, port: int, url: str) -> subprocess.Popen:
    """uvicorn in its own process: microseg's app (`create_app`) or the minimal one."""
    code = (
        "import sys, uvicorn\n"
        f"sys.path.insert(0, {str(ROOT / 'src')!r})\n"
        "from fastapi import FastAPI\n"
        "if sys.argv[1] == 'minimal':\n"
        "    app = FastAPI()\n"
        "    @app.get('/ping')\n"
        "    def ping() -> dict:\n"
        "        return {'ok': True}\n"
        "else:\n"
        "    from pathlib import Path\n"
        "    from microseg.server import create_app\n"
        "    app = create_app(sys.argv[3], flow_store=Path(sys.argv[4]))\n"
        "uvicorn.run(app, host='127.0.0.1', port=int(sys.argv[2]), log_level='warning', access_log=False)\n"
    )
    sessions = ROOT / "examples" / "seed-lab-sessions.csv"
    return subprocess.Popen([sys.executable, "-c", code, which, str(port), url, str(sessions)])


async def _wait_ready(base: str, path: str) -> None:
    import httpx2

    async with httpx2.AsyncClient() as client:
        for _ in range(600):  # bounded: up to a minute
            try:
                await client.get(base + path, timeout=2)
                return
            except httpx2.TransportError:
                await asyncio.sleep(0.1)
    raise RuntimeError(f"{base} did not start")


async def _warm(base: str, path: str, headers: dict) -> None:
    import httpx2

    async with httpx2.AsyncClient(base_url=base, headers=headers, timeout=600) as client:
        answer = await client.get(path)
        if answer.status_code != 200:
            raise RuntimeError(f"{path}: {answer.status_code} {answer.text[:300]}")


async def load(base: str, path: str, headers: dict, clients: int, seconds: float) -> dict:
    """`clients` clients sending GET `path` back to back for `seconds`."""
    import httpx2

    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def one_client() -> None:
        nonlocal errors
        limits = httpx2.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx2.AsyncClient(
            base_url=base, headers=headers, limits=limits, timeout=60
        ) as client:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    answer = await client.get(path)
                    ok = answer.status_code == 200
                except httpx2.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - started)
                errors += not ok

    started = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(quantiles[49] * 1000, 2),
        "p99_ms": round(quantiles[98] * 1000, 2),
    }


def endpoints() -> list[tuple[str, str]]:
    reads = [("revisions", "/api/revisions"), ("sessions", "/api/sessions?limit=100")]
    for revision, label, device in ((1, "seed", SWITCH), (2, f"{BIG_RULES}_rules", "leaf1")):
        reads += [
            (f"objects_{label}", f"/api/revisions/{revision}/objects"),
            (f"compile_{label}", f"/api/compile?policy=rev:{revision}&device={device}"),
            (
                f"check_{label}",
                f"/api/check?policy=rev:{revision}&from=172.18.6.138&to=10.100.99.51&port=22"
                if revision == 1
                else f"/api/check?policy=rev:{revision}&from=10.0.0.1&to=10.0.1.1&port=1024",
            ),
        ]
    return reads


async def run(clients: int, seconds: float, url: str, token: str) -> dict:
    ours, minimal = _free_port(), _free_port()
    processes = [serve("microseg", ours, url), serve("minimal", minimal, url)]
    try:
        await _wait_ready(f"http://127.0.0.1:{minimal}", "/ping")
        await _wait_ready(f"http://127.0.0.1:{ours}", "/api/openapi.json")
        headers = {"Authorization": f"Bearer {token}"}
        results = {
            "minimal": await load(f"http://127.0.0.1:{minimal}", "/ping", {}, clients, seconds)
        }
        for name, path in endpoints():
            # One request first: the server's revision cache is warm, as on a running server.
            await _warm(f"http://127.0.0.1:{ours}", path, headers)
            results[name] = await load(f"http://127.0.0.1:{ours}", path, headers, clients, seconds)
        return results
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:  # still finishing requests the clients dropped
                process.kill()
                process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="microseg-bench-api-") as directory:
        os.environ.pop("MICROSEG_DATABASE_URL", None)
        url, token = prepare(Path(directory))
        results = asyncio.run(run(args.clients, args.seconds, url, token))
    ceiling = results["minimal"]["rps"] or 1
    for figures in results.values():
        figures["vs_minimal"] = round(figures["rps"] / ceiling, 3)
    errors = sum(figures["errors"] for figures in results.values())
    print(
        json.dumps(
            {
                "bench": "api",
                "clients": args.clients,
                "seconds": args.seconds,
                "big_policy_rules": BIG_RULES,
                "errors": errors,
                "endpoints": results,
            }
        ),
        flush=True,
    )
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
