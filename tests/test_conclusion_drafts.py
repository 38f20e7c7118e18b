"""The conclusion being written: saved on the server, versioned so that two saves from different
places never overwrite each other silently, private to who signs, discarded by signing."""

from __future__ import annotations

import pytest

from consilium.consult import drafts
from consilium.consult import workflow as wf
from consilium.errors import Conflict, Forbidden, InvalidInput, NotFound
from tests.test_consult_workflow import (
    COLLEAGUE,
    CONSULTANT,
    REFERRING,
    REG_HEAD,
    ctx,  # noqa: F401  (the fixture)
    draft,
)

TEXT = {"findings": "Спикулированный узел 14 мм.", "impression": "Подозрение на рак.",
        "recommendations": ""}


def accepted_case(context: wf.ConsultContext) -> int:
    case_id = draft(context)
    wf.submit(context, REFERRING, case_id, version=1)
    wf.accept(context, CONSULTANT, case_id, version=2)
    return case_id


def test_saves_are_versioned_and_a_stale_one_changes_nothing(ctx: wf.ConsultContext) -> None:  # noqa: F811
    case_id = accepted_case(ctx)
    assert drafts.conclusion_draft(ctx, CONSULTANT, case_id) is None
    first = drafts.save_conclusion_draft(ctx, CONSULTANT, case_id, version=None, **TEXT)
    assert first.version == 1 and first.author == CONSULTANT.subject
    second = drafts.save_conclusion_draft(ctx, CONSULTANT, case_id, version=1, **{
        **TEXT, "recommendations": "ПЭТ-КТ."})
    assert second.version == 2
    # the same consultant in an old tab, still at version 1: refused, the newer text stays
    with pytest.raises(Conflict, match="changed since you loaded it"):
        drafts.save_conclusion_draft(ctx, CONSULTANT, case_id, version=1, **TEXT)
    with pytest.raises(Conflict):
        drafts.save_conclusion_draft(ctx, CONSULTANT, case_id, version=None, **TEXT)
    kept = drafts.conclusion_draft(ctx, CONSULTANT, case_id)
    assert kept is not None and (kept.version, kept.recommendations) == (2, "ПЭТ-КТ.")
    with pytest.raises(InvalidInput):
        drafts.save_conclusion_draft(ctx, CONSULTANT, case_id, version=2, findings="x" * 100_001,
                                     impression="", recommendations="")


def test_only_who_signs_sees_the_draft(ctx: wf.ConsultContext) -> None:  # noqa: F811
    case_id = accepted_case(ctx)
    drafts.save_conclusion_draft(ctx, CONSULTANT, case_id, version=None, **TEXT)
    for other in (REFERRING, COLLEAGUE, REG_HEAD):  # the requester, a colleague, the head
        with pytest.raises(Forbidden):
            drafts.conclusion_draft(ctx, other, case_id)
        with pytest.raises(Forbidden):
            drafts.save_conclusion_draft(ctx, other, case_id, version=1, **TEXT)
    from tests.test_consult_workflow import person

    stranger = person("nobody", "third-hospital", "consultant")
    with pytest.raises(NotFound):
        drafts.conclusion_draft(ctx, stranger, case_id)


def test_no_draft_before_acceptance_and_signing_discards_it(ctx: wf.ConsultContext) -> None:  # noqa: F811
    case_id = draft(ctx)
    wf.submit(ctx, REFERRING, case_id, version=1)
    with pytest.raises(Conflict, match="no conclusion is being written"):
        drafts.save_conclusion_draft(ctx, CONSULTANT, case_id, version=None, **TEXT)
    wf.accept(ctx, CONSULTANT, case_id, version=2)
    drafts.save_conclusion_draft(ctx, CONSULTANT, case_id, version=None, **TEXT)
    wf.conclude(ctx, CONSULTANT, case_id, findings=TEXT["findings"],
                impression=TEXT["impression"])
    assert drafts.conclusion_draft(ctx, CONSULTANT, case_id) is None
    amendment = drafts.save_conclusion_draft(ctx, CONSULTANT, case_id, version=None, **{
        **TEXT, "impression": "Рак лёгкого."})
    assert amendment.version == 1  # the amendment's own draft
    wf.amend(ctx, CONSULTANT, case_id, reason="biopsy", findings=TEXT["findings"],
             impression="Рак лёгкого.")
    assert drafts.conclusion_draft(ctx, CONSULTANT, case_id) is None
