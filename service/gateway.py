"""What the gateway holds: settings, database, artifact store and the Celery client used to
publish job ids. Routes get it from `request.app.state.gw`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from service.settings import GatewaySettings
from store.artifacts import ArtifactStore
from store.db import Database


@dataclass
class Gateway:
    settings: GatewaySettings
    db: Database
    store: ArtifactStore
    celery: object


def gateway(request: Request) -> Gateway:
    return request.app.state.gw


GatewayDep = Annotated[Gateway, Depends(gateway)]
