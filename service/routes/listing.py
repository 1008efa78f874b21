"""Listing and fetching stored records, shared by the resources that hold them."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import func, select

from service.gateway import Gateway
from service.problems import Problem


def page(gw: Gateway, tenant: str, record_cls, view: Callable[[object], dict], limit: int,
         offset: int) -> dict:
    """The tenant's records, newest first, with the total count."""
    mine = record_cls.tenant == tenant
    with gw.db.session() as s:
        rows = s.execute(select(record_cls).where(mine)
                         .order_by(record_cls.created_at.desc(), record_cls.id)
                         .limit(limit).offset(offset)).scalars().all()
        total = s.execute(select(func.count()).select_from(record_cls).where(mine)).scalar_one()
    return {"items": [view(r) for r in rows], "total": total, "limit": limit, "offset": offset}


def get_or_404(gw: Gateway, tenant: str, record_cls, record_id: str, what: str):
    """Another tenant's record is as absent as one that never existed."""
    with gw.db.session() as s:
        record = s.get(record_cls, record_id)
    if record is None or record.tenant != tenant:
        raise Problem(404, f"no {what} {record_id!r}")
    return record
