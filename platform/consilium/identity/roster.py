"""Who a consult request can be sent to: the other institutions, their specialties and named
specialists. Institutions come from the configuration; specialists are the consultants known to
Consilium (users are created at their first login, or registered ahead by the demo seeding)."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from consilium.errors import Forbidden
from consilium.identity.models import Role, User
from consilium.identity.policy import Principal
from consilium.identity.users import now, roles_of
from consilium.settings import Settings


class Specialist(BaseModel):
    subject: str = Field(description="the principal subject a case's target_subject names")
    name: str
    specialty: str


class ConsultTarget(BaseModel):
    id: str
    name: str
    specialties: list[str] = Field(default_factory=list)
    specialists: list[Specialist] = Field(default_factory=list)


class Directory(BaseModel):
    """``GET /api/directory``: where a consult request can go."""

    institutions: list[ConsultTarget]


class Colleagues(BaseModel):
    """``GET /api/directory/colleagues``: whom a case can be reassigned to."""

    colleagues: list[Specialist]


def consult_targets(settings: Settings, engine: Engine,
                    principal: Principal) -> list[ConsultTarget]:
    """The institutions other than the caller's, each with its consultants' specialties."""
    if not principal.is_clinician:
        raise Forbidden("for clinicians")
    targets = {inst.id: ConsultTarget(id=inst.id, name=inst.name) for inst in settings.institutions
               if inst.id != principal.institution_id}
    with Session(engine) as session:
        users = session.exec(select(User).where(col(User.institution_id).in_(list(targets)))
                             .order_by(col(User.display_name))).all()
    for user in users:
        if Role.CONSULTANT not in roles_of(user.roles):
            continue
        target = targets[user.institution_id]
        target.specialists.append(Specialist(
            subject=f"{user.provider_id}:{user.provider_subject}", name=user.display_name,
            specialty=user.specialty))
        if user.specialty and user.specialty not in target.specialties:
            target.specialties.append(user.specialty)
    for target in targets.values():
        target.specialties.sort()
    return sorted(targets.values(), key=lambda t: t.name)


def colleagues(engine: Engine, principal: Principal) -> list[Specialist]:
    """The consultants of the caller's own institution, the caller excluded: whom a case can
    be reassigned to."""
    if not principal.is_clinician or not principal.institution_id:
        raise Forbidden("for clinicians of an institution")
    with Session(engine) as session:
        users = session.exec(select(User).where(User.institution_id == principal.institution_id)
                             .order_by(col(User.display_name))).all()
    return [Specialist(subject=f"{u.provider_id}:{u.provider_subject}", name=u.display_name,
                       specialty=u.specialty)
            for u in users
            if Role.CONSULTANT in roles_of(u.roles)
            and f"{u.provider_id}:{u.provider_subject}" != principal.subject]


def register_user(engine: Engine, provider_id: str, subject: str, *, name: str,
                  institution_id: str, roles: list[str], specialty: str) -> bool:
    """Create a user ahead of their first login (a directory entry); True when created.
    Never changes an existing user: their provider's claims win at each login."""
    with Session(engine) as session:
        exists = session.exec(select(User).where(User.provider_id == provider_id,
                                                 User.provider_subject == subject)).first()
        if exists is not None:
            return False
        stamp = now()
        session.add(User(provider_id=provider_id, provider_subject=subject, display_name=name,
                         institution_id=institution_id, roles=" ".join(sorted(roles)),
                         specialty=specialty, created_at=stamp, last_login_at=stamp))
        session.commit()
        return True
