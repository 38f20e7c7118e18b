"""Access grants: a study shared with another institution (or one user) for as long as a case or
a consilium invitation lasts. Granting and revoking are audited."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, or_
from sqlalchemy import select as sa_select
from sqlmodel import Session

from consilium.audit import Actor, AuditAction, AuditTrail
from consilium.identity.models import Grant, GrantKind
from consilium.identity.policy import Principal
from consilium.identity.users import now


def grant_study(
    engine: Engine,
    audit: AuditTrail,
    actor: Actor,
    study_uid: str,
    *,
    institution_id: str = "",
    user_id: int | None = None,
    kind: GrantKind = GrantKind.CASE,
    reference: str = "",
    expires_at: datetime | None = None,
) -> Grant:
    if not institution_id and user_id is None:
        raise ValueError("a grant needs an institution or a user")
    grant = Grant(
        study_uid=study_uid, grantee_institution=institution_id, grantee_user_id=user_id,
        kind=kind.value, reference=reference, granted_by=actor.subject, created_at=now(),
        expires_at=expires_at,
    )
    with Session(engine, expire_on_commit=False) as session:
        session.add(grant)
        session.commit()
        session.refresh(grant)
    audit.record(actor, AuditAction.GRANT, study_uid=study_uid, detail={
        "grant": grant.id, "institution": institution_id, "user": user_id, "kind": kind.value,
        "reference": reference, "expires_at": expires_at.isoformat() if expires_at else None})
    return grant


def revoke_grant(engine: Engine, audit: AuditTrail, actor: Actor, grant_id: int) -> bool:
    with Session(engine, expire_on_commit=False) as session:
        grant = session.get(Grant, grant_id)
        if grant is None or grant.revoked_at is not None:
            return False
        grant.revoked_at = now()
        session.add(grant)
        session.commit()
    audit.record(actor, AuditAction.REVOKE, study_uid=grant.study_uid,
                 detail={"grant": grant_id, "reference": grant.reference})
    return True


def granted_study_uids(engine: Engine, principal: Principal) -> frozenset[str]:
    """Studies shared with the principal's institution or with the principal, active now.

    Every search and every read by someone outside the owning institution asks this: a plain
    Core query on a connection (no ORM session: that was ~0.5 ms of a ~2 ms QIDO-RS search)."""
    if not principal.authenticated or not principal.institution_id:
        return frozenset()
    stamp = now()
    table = Grant.__table__  # type: ignore[attr-defined]
    conditions = [table.c.grantee_institution == principal.institution_id]
    if principal.user_id is not None:
        conditions.append(table.c.grantee_user_id == principal.user_id)
    stmt = sa_select(table.c.study_uid, table.c.expires_at).where(
        or_(*conditions), table.c.revoked_at.is_(None))
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return frozenset(
        uid for uid, expires in rows
        if expires is None or (expires if expires.tzinfo else expires.replace(
            tzinfo=stamp.tzinfo)) > stamp
    )
