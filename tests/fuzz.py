"""`make fuzz`: schemathesis against a live server, signed in with every security scheme of /openapi.json.

Starts embedded Postgres + Redis and one server in a temporary folder, or uses the server at
REPLYHQ_FUZZ_URL. Two passes: every operation with the admin token and the publishable key, then
the SDK operations again with the secret key (schemathesis uses the first scheme an operation
accepts that it has credentials for). Arguments after `--` go to `schemathesis run`; MAX_EXAMPLES
and SEED (environment) set the examples per operation and the seed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from server.dev.embedded import EmbeddedServices
from tests.api_contract import CHECKS, provision, settings, to_toml
from tests.support import ServerProcess

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def _passes(base_url: str, workdir: Path, extra: list[str]) -> int:
    creds = provision(base_url)
    common = ["--checks", ",".join(CHECKS), "--max-examples", os.environ.get("MAX_EXAMPLES", "50"),
              "--seed", os.environ.get("SEED", "1"), "--workers", "2", "--phases", "examples,coverage,fuzzing",
              "--suppress-health-check", "all", "--warnings", "off"]
    status = 0
    for sdk_key, only in (("publishable", []), ("secret", ["--include-path-regex", "^/v1/"])):
        config = workdir / f"schemathesis-{sdk_key}.toml"
        config.write_text(to_toml(settings(creds, sdk_key=sdk_key)))
        print(f"\n== schemathesis: {'every operation' if not only else '/v1 with the secret key'}", flush=True)
        cmd = [str(SCHEMATHESIS), "--config-file", str(config), "run", base_url + "/openapi.json",
               *common, *only, "--report", "junit", "--report-dir", str(Path("out") / "fuzz" / sdk_key), *extra]
        status = subprocess.call(cmd) or status
    return status


def main(extra: list[str]) -> int:
    target = os.environ.get("REPLYHQ_FUZZ_URL")
    if target:
        return _passes(target.rstrip("/"), Path(tempfile.mkdtemp(prefix="replyhq-fuzz-")), extra)
    workdir = Path(tempfile.mkdtemp(prefix="replyhq-fuzz-"))
    os.chmod(workdir, 0o755)  # the unprivileged Postgres user (when we are root) must reach its data dir
    services = EmbeddedServices(workdir / "embedded")
    server: ServerProcess | None = None
    status = 1
    try:
        pg, rd = services.start(True, True)
        assert pg is not None and rd is not None
        server = ServerProcess({"DATABASE_URL": pg, "REDIS_URL": rd, "REPLYHQ_ENV": "test",
                                "JWT_SECRET": secrets.token_urlsafe(48), "DATA_DIR": str(workdir / "data"),
                                "ACCESS_TOKEN_TTL": "86400",  # outlives a long run
                                "LOG_LEVEL": "WARNING", "HOST": "127.0.0.1"}, log_path=workdir / "server.log")
        server.start()
        status = _passes(server.url, workdir, extra)
        return status
    finally:
        if server is not None:
            server.stop()
        services.stop()
        if status == 0:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"server log kept: {workdir / 'server.log'}", file=sys.stderr)

if __name__ == "__main__":
    args = sys.argv[1:]
    raise SystemExit(main(args[1:] if args[:1] == ["--"] else args))
