"""Listing and fetching stored records, shared by the resources that hold them."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query
from sqlalchemy import func, select

from service.gateway import Gateway
from service.problems import Problem


@dataclass(frozen=True)
class Paging:
    """One pagination convention for every list: `limit` items from `offset`, or from where
    a previous page's `next_cursor` left off."""

    limit: int
    offset: int

    def answer(self, items: list, total: int) -> dict:
        end = self.offset + len(items)
        return {"items": items, "total": total, "limit": self.limit, "offset": self.offset,
                "next_cursor": encode_cursor(end) if end < total else None}


def paging(max_limit: int = 1000):
    # (Plain defaults, not Annotated: this module's annotations are strings, and max_limit
    # would not resolve from one.)
    def dependency(limit: int = Query(100, ge=1, le=max_limit),
                   offset: int = Query(0, ge=0, le=10**9),
                   cursor: str | None = Query(None, max_length=200, description=(
                       "the previous page's next_cursor (instead of offset)"))) -> Paging:
        return Paging(limit, decode_cursor(cursor) if cursor else offset)
    return dependency


PagingDep = Annotated[Paging, Depends(paging())]
ExamplePagingDep = Annotated[Paging, Depends(paging(max_limit=10000))]  # records are small


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"p": position}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded))["p"]
        if not isinstance(position, int) or not 0 <= position <= 10**9:
            raise ValueError
        return position
    except Exception:  # noqa: BLE001 - any malformed cursor is the client's error
        raise Problem(422, "cursor: not a cursor this service issued (use next_cursor from "
                           "the previous page)") from None


def page(gw: Gateway, query, record_cls, view: Callable[[object], dict], paging: Paging
         ) -> dict:
    """The records `query` (a select of `record_cls`) matches, newest first, one page of
    them, with the total count."""
    with gw.db.session() as s:
        rows = s.execute(query.order_by(record_cls.created_at.desc(), record_cls.id)
                         .limit(paging.limit).offset(paging.offset)).scalars().all()
        total = s.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    return paging.answer([view(r) for r in rows], total)


def tenant_page(gw: Gateway, tenant: str, record_cls, view: Callable[[object], dict],
                paging: Paging) -> dict:
    return page(gw, select(record_cls).where(record_cls.tenant == tenant), record_cls, view,
                paging)


def get_or_404(gw: Gateway, tenant: str, record_cls, record_id: str, what: str):
    """Another tenant's record is as absent as one that never existed."""
    with gw.db.session() as s:
        record = s.get(record_cls, record_id)
    if record is None or record.tenant != tenant:
        raise Problem(404, f"no {what} {record_id!r}")
    return record
