"""How the ``protocol.*`` changes fold into the session's state (:mod:`.state` registers these
handlers; the browser applies the same rules).

``state["protocol"]`` appears with the first protocol change (a session that never wrote one
has none, so the states of sessions recorded before protocols existed fold the same)::

    {"status": "draft" | "signing" | "closed", "editor", "editor_name",
     "version", "text",                      # the newest saved version
     "draft": {"version", "text", "seq"} | null,   # the editor's text not yet saved
     "versions": [{"version", "at", "subject", "name"}],   # the latest VERSIONS_KEPT
     "signatures": {subject: {"name", "institution", "agree", "dissent", "version", "at",
                              "seq"}},
     "closed_at", "closed_by", "content_sha256", "attachment_id"}

What a change may do was decided before it got its seq (:mod:`.protocol`), except for the
typed text (``protocol.draft``, coalesced, sent without a transaction): the fold takes it only
from the editor, on the version it started from, while the protocol is a draft, so a late draft
of a former editor or of a saved version changes nothing, in every process and browser alike.
"""

from __future__ import annotations

from typing import Any

from consilium.live.events import ChangeKind

VERSIONS_KEPT = 200
"""Versions listed in the state (all of them stay in the protocol's table)."""

State = dict[str, Any]


def protocol_of(state: State) -> dict[str, Any]:
    found = state.get("protocol")
    if found is None:
        found = {"status": "draft", "editor": state.get("chair", ""),
                 "editor_name": _name(state, state.get("chair", "")), "version": 0, "text": "",
                 "draft": None, "versions": [], "signatures": {}, "closed_at": None,
                 "closed_by": "", "content_sha256": "", "attachment_id": None}
        state["protocol"] = found
    return found


def _name(state: State, subject: str) -> str:
    member = state.get("members", {}).get(subject) or {}
    return str(member.get("name", ""))


def _pen(state: State, _seq: int, _at: str, _actor: str, p: dict[str, Any]) -> None:
    protocol = protocol_of(state)
    if protocol["status"] == "draft":
        protocol.update(editor=p["subject"], editor_name=p.get("name", ""), draft=None)


def _saved(state: State, _seq: int, at: str, actor: str, p: dict[str, Any]) -> None:
    protocol = protocol_of(state)
    protocol.update(version=p["version"], text=p["text"], draft=None)
    versions: list[dict[str, Any]] = protocol["versions"]
    versions.append({"version": p["version"], "at": at, "subject": actor,
                     "name": p.get("name", "")})
    if len(versions) > VERSIONS_KEPT:
        del versions[: len(versions) - VERSIONS_KEPT]


def _draft(state: State, seq: int, _at: str, actor: str, p: dict[str, Any]) -> None:
    protocol = protocol_of(state)
    if (protocol["status"] == "draft" and actor == protocol["editor"]
            and p.get("version") == protocol["version"]):
        protocol["draft"] = {"version": p["version"], "text": p.get("text", ""), "seq": seq}


def _signing(state: State, _seq: int, _at: str, _actor: str, _p: dict[str, Any]) -> None:
    protocol_of(state).update(status="signing", draft=None, signatures={})


def _signed(state: State, seq: int, at: str, _actor: str, p: dict[str, Any]) -> None:
    protocol_of(state)["signatures"][p["subject"]] = {
        "name": p.get("name", ""), "institution": p.get("institution", ""),
        "agree": bool(p.get("agree")), "dissent": p.get("dissent", ""),
        "version": p.get("version"), "at": at, "seq": seq}


def _reopened(state: State, _seq: int, _at: str, _actor: str, _p: dict[str, Any]) -> None:
    protocol_of(state).update(status="draft", signatures={})


def _closed(state: State, _seq: int, at: str, actor: str, p: dict[str, Any]) -> None:
    protocol_of(state).update(status="closed", closed_at=at, closed_by=actor, draft=None,
                              content_sha256=p.get("content_sha256", ""),
                              attachment_id=p.get("attachment_id"))


HANDLERS: dict[ChangeKind, Any] = {
    ChangeKind.PROTOCOL_PEN: _pen,
    ChangeKind.PROTOCOL_SAVED: _saved,
    ChangeKind.PROTOCOL_DRAFT: _draft,
    ChangeKind.PROTOCOL_SIGNING: _signing,
    ChangeKind.PROTOCOL_SIGNED: _signed,
    ChangeKind.PROTOCOL_REOPENED: _reopened,
    ChangeKind.PROTOCOL_CLOSED: _closed,
}
