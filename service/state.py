"""What the gateway holds: settings, database, artifact store and the Celery client used to
publish job ids. Routes get it from `request.app.state.gw`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from workers.artifacts import ArtifactStore
from workers.db import Database
from workers.settings import Settings


@dataclass
class Gateway:
    settings: Settings
    db: Database
    store: ArtifactStore
    celery: object


def gateway(request: Request) -> Gateway:
    return request.app.state.gw


GatewayDep = Annotated[Gateway, Depends(gateway)]
