"""The clinicians of the built-in development identity provider (embedded default only):
who can sign in there, and the users the demo data seeds for them."""

from __future__ import annotations

from dataclasses import dataclass

DEMO_PASSWORD = "demo"  # shown on the demo provider's login page; the demo IdP is off by default


@dataclass(frozen=True)
class DemoClinician:
    username: str
    name: str
    institution: str
    roles: tuple[str, ...]
    specialty: str
    email: str = ""


DEMO_CLINICIANS = (
    DemoClinician("ivanova", "Анна Иванова", "city-hospital", ("referring",), "internal medicine"),
    DemoClinician("petrov", "Pavel Petrov", "city-hospital", ("consultant",), "radiology"),
    DemoClinician("sidorov", "Сергей Сидоров", "city-hospital", ("head", "consultant"),
                  "radiology"),
    DemoClinician("city-admin", "City IT Admin", "city-hospital", ("admin",), ""),
    DemoClinician("kuznetsova", "Елена Кузнецова", "regional-center", ("consultant",),
                  "radiology"),
    DemoClinician("orlov", "Igor Orlov", "regional-center", ("referring",), "thoracic surgery"),
    DemoClinician("morozov", "Дмитрий Морозов", "regional-center", ("head", "consultant"),
                  "radiology"),
    DemoClinician("reg-admin", "Regional IT Admin", "regional-center", ("admin",), ""),
)


def find_clinician(username: str) -> DemoClinician | None:
    return next((c for c in DEMO_CLINICIANS if c.username == username), None)
