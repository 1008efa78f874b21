"""Listing and fetching stored records, shared by the resources that hold them."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import func, select

from service.problems import Problem
from service.state import Gateway


def page(gw: Gateway, record_cls, view: Callable[[object], dict], limit: int,
         offset: int) -> dict:
    """Newest first, with the total count."""
    with gw.db.session() as s:
        rows = s.execute(select(record_cls).order_by(record_cls.created_at.desc(),
                                                     record_cls.id)
                         .limit(limit).offset(offset)).scalars().all()
        total = s.execute(select(func.count()).select_from(record_cls)).scalar_one()
    return {"items": [view(r) for r in rows], "total": total, "limit": limit, "offset": offset}


def get_or_404(gw: Gateway, record_cls, record_id: str, what: str):
    with gw.db.session() as s:
        record = s.get(record_cls, record_id)
    if record is None:
        raise Problem(404, f"no {what} {record_id!r}")
    return record
