"""The Socket.IO protocol of live consilium sessions: event names, payload models, change kinds.

Everything here is described for the browser's implementers in ``docs/live-consilium.md``; keep
the two in step. Payloads are validated once, at the boundary (:mod:`.namespace`), with these
models: unknown fields are refused, numbers must be finite, strings and lists are bounded, so
that what a client declares cannot take more than a bounded amount of memory or time.

View states are **whole**: a ``view.stack`` change carries the presenter's complete stack state,
not a difference, so that keeping only the latest one per kind (coalescing) loses nothing.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

NAMESPACE = "/consilium"

# client -> server (each answered by an acknowledgement, see Ack)
EVT_JOIN = "session:join"
EVT_LEAVE = "session:leave"
EVT_VIEW = "view:change"
EVT_POINTER = "pointer:move"
EVT_CHAT = "chat:send"
EVT_HAND_RAISE = "hand:raise"
EVT_HAND_LOWER = "hand:lower"
EVT_CONTROL_REQUEST = "control:request"
EVT_CONTROL_WITHDRAW = "control:withdraw"
EVT_CONTROL_GRANT = "control:grant"
EVT_CONTROL_TAKE = "control:take"
EVT_END = "session:end"
EVT_RENDER_FOLLOW = "session:render_follow"
EVT_PROTOCOL_DRAFT = "protocol:draft"
EVT_MARK_PUT = "mark:put"
EVT_MARK_DELETE = "mark:delete"
EVT_MARK_DRAWING = "mark:drawing"

# server -> client
EVT_CHANGE = "session:change"
EVT_RENDER = "session:render"
EVT_RENDER_ERROR = "session:render_error"
EVT_CLOSED = "session:closed"
EVT_INVITED = "consilium:invited"  # on the default namespace, room user:<subject>

CHAT_MAX = 2000
PROTOCOL_MAX = 20_000
"""Characters of the protocol's text (a consilium's decision is a page or two)."""
NAME_MAX = 64
UID_MAX = 64


class ChangeKind(StrEnum):
    """What a change does to the session's state (:mod:`.state` folds them)."""

    SESSION_SCHEDULED = "session.scheduled"
    SESSION_OPENED = "session.opened"
    SESSION_ENDED = "session.ended"
    MEMBER_INVITED = "member.invited"
    MEMBER_UNINVITED = "member.uninvited"
    MEMBER_JOINED = "member.joined"
    MEMBER_LEFT = "member.left"
    CONTROL_REQUESTED = "control.requested"
    CONTROL_WITHDRAWN = "control.withdrawn"
    CONTROL_GRANTED = "control.granted"
    HAND_RAISED = "hand.raised"
    HAND_LOWERED = "hand.lowered"
    CHAT_MESSAGE = "chat.message"
    VIEW_STACK = "view.stack"
    VIEW_MPR = "view.mpr"
    VIEW_VOLUME = "view.volume"
    POINTER = "pointer"
    # the protocol (:mod:`.protocol`): pen, saved versions, the text being typed, signatures
    PROTOCOL_PEN = "protocol.pen"
    PROTOCOL_SAVED = "protocol.saved"
    PROTOCOL_DRAFT = "protocol.draft"
    PROTOCOL_SIGNING = "protocol.signing"
    PROTOCOL_SIGNED = "protocol.signed"
    PROTOCOL_REOPENED = "protocol.reopened"
    PROTOCOL_CLOSED = "protocol.closed"
    MARK_PUT = "mark.put"  # a mark of the case added or replaced (kept with the case too)
    MARK_DELETED = "mark.deleted"
    MARK_DRAWING = "mark.drawing"  # the stroke a participant is drawing (not kept)

    @property
    def coalesced(self) -> bool:
        """High-frequency kinds: only the latest per session (and, for the pointer, per
        participant) is written and broadcast, at most once per coalescing interval."""
        return self in COALESCED_KINDS


COALESCED_KINDS = frozenset({ChangeKind.VIEW_STACK, ChangeKind.VIEW_MPR, ChangeKind.VIEW_VOLUME,
                             ChangeKind.POINTER, ChangeKind.PROTOCOL_DRAFT,
                             ChangeKind.MARK_DRAWING})
PER_ACTOR_KINDS = frozenset({ChangeKind.POINTER, ChangeKind.MARK_DRAWING})
"""Coalesced kinds of which the latest of each participant is kept (not one per session)."""
VIEW_KINDS = (ChangeKind.VIEW_STACK, ChangeKind.VIEW_MPR, ChangeKind.VIEW_VOLUME)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


Uid = Annotated[str, Field(min_length=1, max_length=UID_MAX, pattern=r"^[0-9.]+$")]
SessionId = Annotated[str, Field(min_length=8, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]
Vec3 = tuple[float, float, float]
Subject = Annotated[str, Field(min_length=1, max_length=256)]


# --------------------------------------------------------------------------- view states


class Voi(Strict):
    center: float
    width: float = Field(gt=0)


class StackViewport(Strict):
    """One viewport of the presenter's 2D layout."""

    study_uid: Uid
    series_uid: Uid
    image_index: int = Field(default=0, ge=0, le=100_000)
    frame: int = Field(default=0, ge=0, le=100_000)
    voi: Voi | None = None
    zoom: float = Field(default=1.0, gt=0, le=100)
    pan: tuple[float, float] = (0.0, 0.0)
    rotation: float = Field(default=0.0, ge=-360, le=360)
    flip_h: bool = False
    flip_v: bool = False
    invert: bool = False


class StackView(Strict):
    """``view.stack``: the presenter's 2D viewer (layout, series, slice, window, zoom...)."""

    layout: str = Field(default="1x1", pattern=r"^([1-4]x[1-4]|mpr)$")  # mpr: the MPR / 3D panes
    active: int = Field(default=0, ge=0, le=15)
    viewports: list[StackViewport] = Field(min_length=1, max_length=16)


MPR_PANES = ("axial", "coronal", "sagittal", "oblique")


class MprPane(Strict):
    orientation: Literal["axial", "coronal", "sagittal", "oblique"]
    normal: Vec3 | None = None
    x_axis: Vec3 | None = None
    size: int | None = Field(default=None, ge=16, le=4096)


class MprView(Strict):
    """``view.mpr``: the presenter's MPR panes, in the render service's own terms (the shared
    render stream of pane ``p`` is ``mpr:p``)."""

    study_uid: Uid
    series_uid: Uid
    point: Vec3 | None = None
    window: tuple[float, float] | None = None
    slab: float = Field(default=0.0, ge=0, le=500)
    mode: Literal["mip", "minip", "mean"] = "mip"
    panes: dict[Literal["axial", "coronal", "sagittal", "oblique"], MprPane] = Field(
        min_length=1, max_length=4)


class VolumeView(Strict):
    """``view.volume``: the presenter's 3D view, in the render service's terms (the shared
    render stream ``3d``)."""

    study_uid: Uid
    series_uid: Uid
    preset: str | None = Field(default=None, max_length=NAME_MAX)
    azimuth: float = 0.0
    elevation: float = 0.0
    roll: float = 0.0
    zoom: float = Field(default=1.0, ge=0.05, le=50)
    pan: tuple[float, float] = (0.0, 0.0)
    start: Literal["anterior", "posterior", "left", "right", "superior", "inferior"] = "anterior"
    parallel: bool = False
    size: tuple[int, int] = (512, 512)
    clip: tuple[float, float, float, float, float, float] | None = None
    shift: float = Field(default=0.0, ge=-5000, le=5000)


VIEW_MODELS: dict[ChangeKind, type[Strict]] = {
    ChangeKind.VIEW_STACK: StackView, ChangeKind.VIEW_MPR: MprView,
    ChangeKind.VIEW_VOLUME: VolumeView}


def volume_params(view: VolumeView) -> dict[str, Any]:
    """The render service's parameters of a 3D view (``render.protocol.parse_volume``)."""
    params: dict[str, Any] = view.model_dump(exclude={"study_uid", "series_uid", "clip"},
                                             exclude_none=True)
    params["pan"] = list(view.pan)
    params["size"] = list(view.size)
    if view.clip is not None:
        params["clip"] = list(view.clip)
    return params


def mpr_params(view: MprView, pane: str) -> dict[str, Any]:
    """The render service's parameters of one MPR pane (``parse_mpr``)."""
    spec = view.panes[pane]  # type: ignore[index]
    params: dict[str, Any] = {"orientation": spec.orientation, "slab": view.slab,
                              "mode": view.mode}
    for key, value in (("normal", spec.normal), ("x_axis", spec.x_axis), ("size", spec.size),
                       ("point", view.point), ("window", view.window)):
        if value is not None:
            params[key] = list(value) if isinstance(value, tuple) else value
    return params


# --------------------------------------------------------------------------- client -> server


class SessionRef(BaseModel):
    """Read first from every event, before the rest is validated: whether the session is the
    caller's is answered before the form of the request (a stranger learns nothing from a 400)."""

    model_config = ConfigDict(extra="ignore")

    session_id: SessionId


class Join(Strict):
    session_id: SessionId
    last_seq: int | None = Field(default=None, ge=0)
    """The seq of the last change the client applied (a reconnect): the answer then holds the
    changes after it, or a snapshot when that is shorter."""


class Leave(Strict):
    session_id: SessionId


class ViewChange(Strict):
    session_id: SessionId
    kind: Literal["view.stack", "view.mpr", "view.volume"]
    state: dict[str, Any]
    """The whole state of that part of the view (validated by the kind's model)."""
    final: bool = False
    """The pointer was released: the shared render streams send a full-quality frame now."""


class PointerMove(Strict):
    session_id: SessionId
    visible: bool = True
    series_uid: Uid | None = None
    image_id: str | None = Field(default=None, max_length=256)
    """What the browser draws on: a SOP Instance UID with its frame, or an MPR pane name."""
    x: float = 0.0
    y: float = 0.0


class ChatSend(Strict):
    session_id: SessionId
    text: str = Field(min_length=1, max_length=CHAT_MAX)


class HandChange(Strict):
    session_id: SessionId
    subject: Subject | None = None
    """``hand:lower`` of someone else's hand (presenter or chair); default: one's own."""


class ControlRequest(Strict):
    session_id: SessionId


class ControlGrant(Strict):
    session_id: SessionId
    subject: Subject


class SessionEnd(Strict):
    session_id: SessionId


class ProtocolDraft(Strict):
    """The protocol's text as its editor types it (coalesced; saved versions go over HTTP):
    ``version`` is the saved version the text was started from."""

    session_id: SessionId
    version: int = Field(ge=0)
    text: str = Field(max_length=PROTOCOL_MAX)


class MarkPut(Strict):
    """Add or replace one's own mark of the case (:class:`consilium.archive.marks.Mark`; its
    author and colour are the server's)."""

    session_id: SessionId
    mark: dict[str, Any]


class MarkDelete(Strict):
    session_id: SessionId
    id: str = Field(min_length=1, max_length=64)


class MarkDrawing(Strict):
    """The mark being drawn, as it is now (coalesced); ``mark: null`` when the stroke ended
    without a mark (cancelled), a ``mark:put`` of the same id ends it too."""

    session_id: SessionId
    mark: dict[str, Any] | None = None


RENDER_VIEWS = ("3d", *(f"mpr:{p}" for p in MPR_PANES))


class RenderFollow(Strict):
    """Receive the session's shared render streams of these views (none: stop, e.g. while the
    participant looks around alone)."""

    session_id: SessionId
    views: list[Literal["3d", "mpr:axial", "mpr:coronal", "mpr:sagittal", "mpr:oblique"]] = \
        Field(default_factory=list, max_length=5)


# --------------------------------------------------------------------------- server -> client


class ChangeMessage(BaseModel):
    """``session:change``: every change, in seq order per session."""

    session_id: str
    seq: int
    at: str
    actor: str
    kind: str
    payload: dict[str, Any]


class RenderFrame(BaseModel):
    """``session:render``: a frame of a shared render stream, acknowledged like any Socket.IO
    event (the client's handler calls its ack callback)."""

    session_id: str
    view: str
    seq: int
    """The seq of the view change whose state the frame shows."""
    quality: Literal["interactive", "final"]
    media_type: str
    width: int
    height: int
    geometry: dict[str, Any]
    render_ms: float
    build_ms: float | None
    image: bytes


class RenderError(BaseModel):
    session_id: str
    view: str
    seq: int | None = None
    status: int
    error: str
    reason: str = ""


class Invited(BaseModel):
    """``consilium:invited``: no patient data (not even the title, which is free text)."""

    session_id: str
    case_id: int
    status: str
    scheduled_at: str
    chair_name: str
    chair_institution: str
