"""`irlib serve`: Alertmanager's webhook in, read-only triage runs, verdicts to the chat."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import click

from irlib.cli import options
from irlib.errors import UsageError


@click.command(name="serve")
@options.profile()
@options.outputs
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8900, show_default=True)
@options.notebooks
@options.errors_to_exit
def serve_command(
    profile: str | None, outputs: Path, host: str, port: int, notebooks: Path | None
) -> None:
    """Triage every firing alert group Alertmanager posts: run its runbook read-only.

    \b
    export IRLIB_SERVE_TOKEN=...            # the profile's serve.token_env
    irlib serve --profile prod.yaml --port 8900
    # alertmanager.yml: a webhook receiver http://HOST:8900/v1/alertmanager,
    #   http_config.authorization {type: Bearer, credentials_file: ...}, send_resolved: true

    Each firing group is routed to a runbook (its `runbook` label, else the profile's
    serve.routes), run without --confirm (no mitigation ever runs from an alert), recorded in
    an incident (opened, or the group's open one joined), and the seed's initial message with
    the verdict, the recommended mitigation, how to confirm it and the evidence link is posted
    to the webhook in the profile's incident.webhook_url_env. Resolutions are noted, never run.

    \b
    GET /healthz (open); with the token: /v1/status, /v1/runs, /v1/alerts, /v1/incidents,
    /v1/incidents/ID, /v1/evidence/INCIDENT/RUN/FILE.
    """
    from irlib.notebooks_dir import notebooks_dir as default_notebooks
    from irlib.profile import load_profile
    from irlib.serve.server import listen_address, serve_forever
    from irlib.serve.triage import Triage

    loaded = load_profile(profile)
    token_env = loaded.serve.token_env
    token = os.environ.get(token_env, "")
    if not token:
        raise UsageError(f"irlib serve needs a bearer token: set ${token_env} (serve.token_env)")
    profile_path = Path(profile or os.environ["IRLIB_PROFILE"])
    base = listen_address(loaded.serve.public_url, host, port)
    triage = Triage(
        loaded,
        profile_path,
        outputs,
        notebooks or default_notebooks(),
        base,
        log=options.progress,
    )
    options.progress(f"irlib serve on {base} (runbooks: {', '.join(triage.known)})")

    def stop(signum: int, frame: object) -> None:
        triage.stop()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    serve_forever(triage, token, host, port)
