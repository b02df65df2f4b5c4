"""The lab's Alertmanager (Debian's prometheus-alertmanager): fed by the lab's Prometheus,
it groups the firing alerts and posts them to `irlib serve`'s webhook.

The bearer token reaches Alertmanager only through `credentials_file` (mode 600, written
here), so no config file or log holds it. Group waits are a second or two: a drill is quick.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from irlib.lab import procs
from irlib.lab.config import LabConfig
from irlib.lab.servers import answers_ready, find_binary

BINARY = "prometheus-alertmanager"
WEBHOOK_PATH = "/v1/alertmanager"
SERVE_TOKEN_ENV = "IRLIB_SERVE_TOKEN"
GROUP_WAIT = "1s"  # a production route waits 30s to gather an incident's alerts
GROUP_INTERVAL = "2s"
REPEAT_INTERVAL = "1h"


def home(config: LabConfig) -> Path:
    return Path(config.state_dir) / "alertmanager"


def token_file(config: LabConfig) -> Path:
    return home(config) / "serve.token"


def write_token(config: LabConfig, token: str) -> Path:
    path = token_file(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    os.chmod(path, 0o600)  # an older file keeps its mode through O_CREAT
    return path


def alertmanager_config(config: LabConfig) -> dict[str, object]:
    """One route, one receiver: every alert group to `irlib serve`, resolutions too."""
    return {
        "route": {
            "receiver": "irlib",
            "group_by": ["runbook"],  # one triage run per runbook, whatever fires
            "group_wait": GROUP_WAIT,
            "group_interval": GROUP_INTERVAL,
            "repeat_interval": REPEAT_INTERVAL,
        },
        "receivers": [
            {
                "name": "irlib",
                "webhook_configs": [
                    {
                        "url": config.url("serve") + WEBHOOK_PATH,
                        "send_resolved": True,
                        "http_config": {
                            "authorization": {
                                "type": "Bearer",
                                "credentials_file": str(token_file(config)),
                            }
                        },
                    }
                ],
            }
        ],
    }


def start_alertmanager(config: LabConfig, token: str) -> int:
    exe = find_binary(BINARY, "prometheus-alertmanager")
    write_token(config, token)
    conf = home(config) / "alertmanager.yml"
    conf.write_text(yaml.safe_dump(alertmanager_config(config), sort_keys=False))
    return procs.spawn(
        [
            exe,
            f"--config.file={conf}",
            f"--storage.path={home(config) / 'data'}",
            f"--web.listen-address={config.host}:{config.ports['alertmanager']}",
            "--cluster.listen-address=",  # one instance: no gossip port
            "--log.level=warn",
        ],
        log=config.logs_dir / "alertmanager.log",
        pid_file=config.run_dir / "alertmanager.pid",
    )


def alertmanager_ready(config: LabConfig) -> bool:
    return answers_ready(config, "alertmanager")
