"""A live consilium in three real Chromium contexts against a real ``consilium serve``: the
regional center's consultant (kuznetsova) calls it from the case page inviting a colleague of the
city hospital (petrov), who is alerted on his home page and joins with one click; the referring
doctor (ivanova, Russian interface) joins from the case page. Then: chat and a raised hand reach
everyone; the followers' viewports show the presenter's slice, window, flips and rotation, and
the laser pointer on the same image point; in the MPR / 3D layout their planes are the
presenter's and the 3D frame they receive has the presenter's camera (checked against the render
service's own answer for that view), drawn from the session's shared streams only; a follower
looks around alone and snaps back; control is asked for and handed over; a reload (a follower's
and the presenter's) resumes with the changes missed, in the same state; the chair ends it and
the case timeline has who joined, presented and said what.

The pages publish their state on ``window.__consilium.session`` (and ``.view``, ``.mpr``: the
viewer's own); the test waits on it and never sleeps. The built front end is required. Heavy:
run it alone. ``CONSILIUM_UPDATE_SCREENSHOT=1`` also writes docs/screenshot-consilium.png.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Error, Page

from tests.conftest import ROOT
from tests.daily_world import World, chromium, logged_in, make_world, wait_ready
from tests.test_daily_i18n import check_language

S = "__consilium.session"
STREAMS = ("mpr:axial", "mpr:coronal", "mpr:sagittal", "3d")
CAMERA = {"position": "X-Camera-Position", "focal_point": "X-Camera-Focal-Point",
          "view_up": "X-Camera-View-Up"}


@dataclass
class Room:
    world: World
    case_id: int
    pages: dict[str, Page] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    session_id: str = ""

    @property
    def chair(self) -> Page:
        return self.pages["kuznetsova"]

    @property
    def everyone(self) -> list[Page]:
        return list(self.pages.values())


def wait(page: Page, condition: str, timeout: float = 30_000) -> None:
    page.wait_for_function(condition, timeout=timeout)


def at(expression: str, values: list[float]) -> str:
    """A JS condition: the vector ``expression`` is ``values`` (to a millionth)."""
    return (f"({expression} || []).length === {len(values)} && ({expression}).every("
            f"(v, i) => Math.abs(v - {json.dumps(values)}[i]) < 1e-6)")


def read(page: Page, expression: str) -> Any:
    return page.evaluate(expression)


@pytest.fixture(scope="module")
def room(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Room]:
    world = make_world(tmp_path_factory.mktemp("live-browser"))
    try:
        for user in ("petrov", "ivanova", "kuznetsova", "morozov"):  # known: invitable
            world.client(user)
        case_id = world.open_case("Тактика при очаге в правом лёгком?", priority="urgent")
        world.act("kuznetsova", case_id, "accept")
        with chromium() as browser, contexts(browser, world) as pages:
            room = Room(world, case_id)
            for user, page in pages.items():
                room.pages[user] = page
                errors: list[str] = []
                room.errors[user] = errors
                page.on("pageerror", keep_in(errors))
                page.on("dialog", lambda d: d.accept())  # the chair's "end for everyone?"
            yield room
    finally:
        world.web.stop()


@contextmanager
def contexts(browser: Browser, world: World) -> Iterator[dict[str, Page]]:
    with logged_in(browser, world, "kuznetsova", "en-US") as k, \
            logged_in(browser, world, "petrov", "en-US") as p, \
            logged_in(browser, world, "ivanova", "ru-RU") as i:
        made: dict[str, BrowserContext] = {"kuznetsova": k, "petrov": p, "ivanova": i}
        yield {user: context.new_page() for user, context in made.items()}


def keep_in(errors: list[str]) -> Callable[[Error], None]:
    return lambda error: errors.append(str(error))


def open_page(page: Page, url: str) -> None:
    page.goto(url)
    wait_ready(page)


def in_session(page: Page) -> None:
    wait_ready(page)
    wait(page, f"{S} && {S}.joins > 0 && {S}.status === 'open'")


# -- calling it, being invited, joining ------------------------------------------------------


def test_the_case_page_calls_it_and_the_invited_join_with_one_click(room: Room) -> None:
    web = room.world.web.url
    chair, petrov, ivanova = room.chair, room.pages["petrov"], room.pages["ivanova"]
    open_page(petrov, web + "/")  # waiting on his home page: the invitation comes live
    assert read(petrov, "__consilium.page.sections").count("home-consilia") == 1
    open_page(chair, f"{web}/viewer/cases/{room.case_id}")
    wait(chair, "__consilium.consult.loads > 0")
    chair.click("[data-testid=consilium-call]")
    chair.wait_for_selector("[data-testid=invitee][value='dev:petrov']")
    # the directory offers other institutions' consultants and her own colleagues
    offered = chair.eval_on_selector_all("[data-testid=invitee]", "els => els.map(e => e.value)")
    assert "dev:petrov" in offered and "dev:morozov" in offered and "dev:kuznetsova" not in offered
    chair.check("[data-testid=invitee][value='dev:petrov']")
    chair.fill("[data-testid=consilium-title]", "Тактика лечения")
    chair.click("[data-testid=consilium-start]")
    chair.wait_for_url("**/viewer/consilia/*")
    in_session(chair)
    room.session_id = read(chair, f"{S}.id")
    assert read(chair, f"{S}.presenting") is True

    # petrov: an alert that leads to the session, a row on his home page with "join"
    wait(petrov, "__consilium.alerts.unread.some(a => a.kind === 'consilium-open')")
    row = f"[data-testid=home-consilia] tr[data-session='{room.session_id}']"
    petrov.wait_for_selector(row)
    assert petrov.get_attribute(f"{row}", "data-status") == "open"
    assert petrov.locator(f"{row} [data-testid=invited-badge]").count() == 1
    petrov.click(f"{row} [data-testid=consilium-join]")
    petrov.wait_for_url(f"**/viewer/consilia/{room.session_id}")
    in_session(petrov)
    assert read(petrov, "__consilium.alerts.unread.some(a => a.kind.startsWith('consilium'))") \
        is False  # joined: read

    # ivanova, the case's referring doctor: from the case page
    open_page(ivanova, f"{web}/viewer/cases/{room.case_id}")
    wait(ivanova, f"__consilium.consult.consilia.includes('{room.session_id}')")
    ivanova.click(f"[data-testid=case-consilia] tr[data-session='{room.session_id}'] "
                  "[data-testid=consilium-join]")
    in_session(ivanova)

    subjects = ["dev:kuznetsova", "dev:petrov", "dev:ivanova"]
    for page in room.everyone:
        wait(page, f"{json.dumps(subjects)}.every(s => {S}.members[s] && {S}.members[s].online)")
        assert read(page, f"{S}.presenter") == "dev:kuznetsova"
        badge = page.locator("[data-testid=participant][data-subject='dev:kuznetsova'] "
                             "[data-testid=presenter-badge]")
        assert badge.count() == 1
    members = read(petrov, f"{S}.members")
    assert members["dev:kuznetsova"]["role"] == "chair"
    assert members["dev:petrov"]["invited"] is True
    assert members["dev:ivanova"]["invited"] is False  # a party of the case
    # the participants list says who and from where
    text = petrov.inner_text("[data-subject='dev:petrov']")
    assert "Pavel Petrov" in text and "City Clinical Hospital" in text and "invited" in text


# -- chat and hands --------------------------------------------------------------------------


def test_chat_and_a_raised_hand_reach_everyone(room: Room) -> None:
    ivanova, petrov, chair = room.pages["ivanova"], room.pages["petrov"], room.chair
    ivanova.fill("[data-testid=chat-text]", "Очаг 9 мм, что видите в S6?")
    ivanova.press("[data-testid=chat-text]", "Enter")
    for page in room.everyone:
        wait(page, f"{S}.chat.some(c => c.text === 'Очаг 9 мм, что видите в S6?' "
                   "&& c.subject === 'dev:ivanova')")
        page.wait_for_selector("[data-testid=chat-line]:has-text('Очаг 9 мм')")
    petrov.click("[data-testid=consilium-hand]")
    for page in room.everyone:
        wait(page, f"{S}.members['dev:petrov'].hand === true")
    chair.wait_for_selector("[data-subject='dev:petrov'] [data-testid=hand-badge]")
    chair.click("[data-subject='dev:petrov'] [data-testid=lower-hand]")  # the chair lowers it
    for page in room.everyone:
        wait(page, f"{S}.members['dev:petrov'].hand === false")


# -- the stack viewer followed -----------------------------------------------------------------

VIEW = ("imageIndex", "seriesUID", "windowWidth", "windowCenter", "flipHorizontal", "rotation",
        "invert")


def shown(page: Page) -> dict[str, Any]:
    view = read(page, "__consilium.view")
    assert view is not None
    return {k: view[k] for k in VIEW} | {"zoom": round(view["zoom"], 3)}


def test_followers_show_the_presenters_slice_window_and_orientation(room: Room) -> None:
    chair = room.chair
    followers = [room.pages["petrov"], room.pages["ivanova"]]
    wait(chair, "__consilium.view !== null")
    chair.click("[data-testid=viewport]")  # the keys go to the viewer
    for _ in range(9):
        chair.keyboard.press("ArrowDown")
    chair.keyboard.press("2")  # lung window
    chair.click("[data-testid=toolbar] button[data-id=flip-h]")
    chair.click("[data-testid=toolbar] button[data-id=rotate]")
    box = chair.locator("[data-testid=viewport]").bounding_box()
    assert box is not None
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    chair.mouse.move(cx, cy)  # right-drag zooms
    chair.mouse.down(button="right")
    chair.mouse.move(cx, cy - 60, steps=5)
    chair.mouse.up(button="right")
    wanted = shown(chair)
    assert wanted["imageIndex"] == 9 and wanted["windowWidth"] == 1500
    assert wanted["flipHorizontal"] is True and wanted["rotation"] == 90
    assert wanted["zoom"] != 1
    for page in followers:
        wait(page, f"__consilium.view && __consilium.view.imageIndex === 9 && "
                   f"__consilium.view.rotation === 90 && "
                   f"Math.abs(__consilium.view.zoom - {wanted['zoom']}) < 0.002")
        assert shown(page) == wanted
        # the same image, the same way round: the orientation letters at the edges agree
        assert read(page, "__consilium.view.orientation") == \
            read(chair, "__consilium.view.orientation")
        assert read(page, "__consilium.view.viewportUsesCPU") is False


def image_third(page: Page) -> tuple[float, float]:
    """The page point a third of the way into the image as drawn (imageRect is on the canvas)."""
    box = page.locator("[data-testid=viewport]").bounding_box()
    assert box is not None
    r = read(page, "__consilium.view.imageRect")
    return box["x"] + r[0] + r[2] / 3, box["y"] + r[1] + r[3] / 3


def test_the_laser_pointer_is_seen_on_the_same_image_point(room: Room) -> None:
    chair = room.chair
    chair.click("[data-testid=consilium-pointer]")
    columns, rows = read(chair, "[__consilium.view.columns, __consilium.view.rows]")
    x, y = image_third(chair)
    chair.mouse.move(x - 20, y - 20)
    chair.mouse.move(x, y, steps=4)
    mine = "d => d.subject === 'dev:kuznetsova' && d.at"
    for page in room.everyone:
        px, py = image_third(page)
        wait(page, f"{S}.pointersDrawn.some({mine}) && "
                   f"Math.abs({S}.pointersDrawn.find({mine}).at[0] - {px}) < 2 && "
                   f"Math.abs({S}.pointersDrawn.find({mine}).at[1] - {py}) < 2")
        assert page.locator("[data-testid=laser][data-subject='dev:kuznetsova']").count() == 1
    pointer = read(chair, f"{S}.pointer['dev:kuznetsova']")
    assert pointer["series_uid"] == read(chair, "__consilium.view.seriesUID")
    sop = read(chair, "__consilium.view.imageId").split("/instances/")[1].split("/")[0]
    assert pointer["image_id"] == f"{sop}:1"
    # the image point under the mouse (flipped and turned: not a third of the columns)
    assert 0 <= pointer["x"] < columns and 0 <= pointer["y"] < rows
    chair.click("[data-testid=consilium-pointer]")  # off: hidden for everyone
    for page in room.everyone:
        wait(page, f"!{S}.pointer['dev:kuznetsova']")
        assert page.locator("[data-testid=laser]").count() == 0


# -- MPR and 3D: the session's shared frames ---------------------------------------------------


def expected_camera(room: Room, volume: dict[str, Any]) -> dict[str, list[float]]:
    """The camera the render service itself gives for the presenter's 3D view (HTTP)."""
    params = {"azimuth": volume["azimuth"], "elevation": volume["elevation"],
              "zoom": volume["zoom"], "pan": ",".join(map(str, volume["pan"])),
              "size": ",".join(map(str, volume["size"])), "quality": "final"}
    if volume.get("preset"):
        params["preset"] = volume["preset"]
    if volume.get("clip"):
        params["clip"] = ",".join(map(str, volume["clip"]))
    answer = room.world.client("kuznetsova").get(
        f"/api/render/series/{volume['series_uid']}/volume", params=params)
    assert answer.status_code == 200, answer.text
    return {key: [float(v) for v in answer.headers[header].split(",")]
            for key, header in CAMERA.items()}


def close(a: list[float], b: list[float], tolerance: float = 1e-3) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, abs_tol=tolerance)
                                    for x, y in zip(a, b, strict=True))


def test_followers_mpr_planes_and_3d_camera_are_the_presenters(room: Room) -> None:
    chair = room.chair
    followers = [room.pages["petrov"], room.pages["ivanova"]]
    chair.click("[data-testid=toolbar] button[data-id=mpr3d]")
    everything = " && ".join(f"{S}.frames['{s}']" for s in STREAMS)
    for page in room.everyone:
        wait(page, f"{S}.layout === 'mpr' && {everything}", timeout=60_000)
        assert read(page, f"{S}.streams") == list(STREAMS)
    # the presenter pages the axial plane and turns the planes (oblique), thickens the slab
    chair.click("[data-testid=mpr-pane-axial]")
    for _ in range(4):
        chair.keyboard.press("ArrowDown")
    # shift-drag on the axial pane turns the other two planes about its normal: oblique
    box = chair.locator("[data-testid=mpr-pane-axial]").bounding_box()
    assert box is not None
    x0, y0 = box["x"] + box["width"] * 0.75, box["y"] + box["height"] * 0.5
    chair.keyboard.down("Shift")
    chair.mouse.move(x0, y0)
    chair.mouse.down()
    chair.mouse.move(x0, y0 + box["height"] * 0.2, steps=6)
    chair.mouse.up()
    chair.keyboard.up("Shift")
    chair.fill("input[name=slab]", "6")
    chair.press("input[name=slab]", "Tab")
    wait(chair, "__consilium.mpr.slab.thickness === 6")
    point = read(chair, "__consilium.mpr.point")
    planes = read(chair, "__consilium.mpr.planes")
    slab = read(chair, "__consilium.mpr.slab")
    assert planes["coronal"]["oblique"] and planes["sagittal"]["oblique"]
    for page in followers:
        wait(page, f"{at('__consilium.mpr.point', point)} && "
                   f"__consilium.mpr.slab.thickness === {slab['thickness']}")
        assert read(page, "__consilium.mpr.planes") == planes
        # the axial frame they draw is the presenter's plane: through the point, the slab
        wait(page, f"{S}.frames['mpr:axial'].quality === 'final' && "
                   f"Math.abs({S}.frames['mpr:axial'].geometry.origin[2] - {point[2]}) < 1e-3 &&"
                   f" {S}.frames['mpr:axial'].geometry.slab")
    # the presenter orbits the 3D view
    box = chair.locator("[data-testid=mpr-pane-3d]").bounding_box()
    assert box is not None
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    chair.mouse.move(cx, cy)
    chair.mouse.down()
    chair.mouse.move(cx + 70, cy + 30, steps=8)
    chair.mouse.up()
    camera = read(chair, "__consilium.mpr.camera")
    wait(chair, f"{S}.view.volume && {S}.view.volume.azimuth === {camera['azimuth']} && "
                f"{S}.view.volume.elevation === {camera['elevation']}")
    volume = read(chair, f"{S}.view.volume")
    expected = expected_camera(room, volume)
    wanted = json.dumps(expected["position"])
    for page in room.everyone:
        wait(page, f"{S}.frames['3d'].quality === 'final' && "
                   f"{S}.frames['3d'].geometry.position.every((v, i) => "
                   f"Math.abs(v - {wanted}[i]) < 1e-3)")
        geometry = read(page, f"{S}.frames['3d'].geometry")
        for key, value in expected.items():
            assert close(geometry[key], value), (key, geometry[key], value)
        assert read(page, "__consilium.mpr.camera") == camera
    for page in followers:
        # every frame their panes drew came from the session's streams: none rendered of theirs
        drawn = read(page, "Object.fromEntries(Object.entries(__consilium.mpr.panes)"
                           ".map(([k, p]) => [k, p.frames]))")
        received = read(page, f"Object.fromEntries(Object.entries({S}.frames)"
                              ".map(([k, f]) => [k, f.count]))")
        assert drawn == {"axial": received["mpr:axial"], "coronal": received["mpr:coronal"],
                         "sagittal": received["mpr:sagittal"], "3d": received["3d"]}
        assert read(page, "__consilium.renderingEngineIsGPU") is True


def test_the_pointer_on_an_mpr_pane_and_the_screenshot(room: Room, tmp_path: Path) -> None:
    chair, petrov = room.chair, room.pages["petrov"]
    chair.click("[data-testid=consilium-pointer]")
    box = chair.locator("[data-testid=mpr-pane-axial]").bounding_box()
    assert box is not None
    chair.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.45, steps=3)
    chair.mouse.move(box["x"] + box["width"] * 0.42, box["y"] + box["height"] * 0.5, steps=3)
    mine = "d => d.subject === 'dev:kuznetsova' && d.at"
    wait(petrov, f"{S}.pointersDrawn.some({mine})")
    pointer = read(petrov, f"{S}.pointer['dev:kuznetsova']")
    assert pointer["image_id"] == "mpr:axial"
    drawn = read(petrov, f"{S}.pointersDrawn.find({mine}).at")
    pane = petrov.locator("[data-testid=mpr-pane-axial]").bounding_box()
    assert pane is not None
    assert pane["x"] <= drawn[0] <= pane["x"] + pane["width"]
    assert pane["y"] <= drawn[1] <= pane["y"] + pane["height"]
    petrov.screenshot(path=str(tmp_path / "screenshot-consilium.png"))
    if os.environ.get("CONSILIUM_UPDATE_SCREENSHOT") == "1":
        shutil.copy(tmp_path / "screenshot-consilium.png",
                    ROOT / "docs" / "screenshot-consilium.png")
    chair.click("[data-testid=consilium-pointer]")
    wait(petrov, f"!{S}.pointer['dev:kuznetsova']")


# -- looking around alone, snapping back -------------------------------------------------------


def test_a_follower_looks_around_alone_and_snaps_back(room: Room) -> None:
    chair, ivanova, petrov = room.chair, room.pages["ivanova"], room.pages["petrov"]
    ivanova.click("[data-testid=consilium-detach]")
    wait(ivanova, f"{S}.following === false && {S}.streams.length === 0")
    alone_at = read(ivanova, "__consilium.mpr.point")
    chair.click("[data-testid=mpr-pane-axial]")
    for _ in range(3):
        chair.keyboard.press("ArrowUp")
    moved = read(chair, "__consilium.mpr.point")
    assert moved != alone_at
    wait(petrov, at("__consilium.mpr.point", moved))
    assert read(ivanova, "__consilium.mpr.point") == alone_at  # she stays where she was
    # she pages herself: her panes render from her own streams now
    ivanova.click("[data-testid=mpr-pane-coronal]")
    for _ in range(2):
        ivanova.keyboard.press("ArrowDown")
    wait(ivanova, "__consilium.mpr.panes.coronal.frames > 0 && "
                  "__consilium.mpr.panes.coronal.quality === 'final'")
    assert read(ivanova, "__consilium.mpr.point") not in (moved, alone_at)
    assert read(chair, "__consilium.mpr.point") == moved
    # back to the presenter
    ivanova.click("[data-testid=consilium-follow]")
    wait(ivanova, f"{S}.following === true && {S}.streams.length === 4 && "
                  f"{at('__consilium.mpr.point', moved)}")
    assert read(ivanova, "__consilium.mpr.planes") == read(chair, "__consilium.mpr.planes")
    wait(ivanova, f"{S}.frames['mpr:axial'] && "
                  f"Math.abs({S}.frames['mpr:axial'].geometry.origin[2] - {moved[2]}) < 1e-3")


# -- control handed over -----------------------------------------------------------------------


def test_control_is_asked_for_and_handed_over(room: Room) -> None:
    chair, petrov, ivanova = room.chair, room.pages["petrov"], room.pages["ivanova"]
    petrov.click("[data-testid=consilium-request]")
    chair.wait_for_selector("[data-subject='dev:petrov'] [data-testid=asks-control]")
    # only the presenter and the chair hand it over
    assert ivanova.locator("[data-testid=grant-control]").count() == 0
    chair.click("[data-subject='dev:petrov'] [data-testid=grant-control]")
    for page in room.everyone:
        wait(page, f"{S}.presenter === 'dev:petrov' && "
                   f"{S}.state.control_requests.length === 0")
    wait(petrov, f"{S}.presenting === true")
    assert read(chair, f"{S}.presenting") is False
    assert read(chair, f"{S}.following") is True
    # the new presenter goes back to the stack and pages it: the others follow
    petrov.click("[data-testid=toolbar] button[data-id=mpr3d]")
    petrov.click("[data-testid=viewport]")
    for _ in range(5):
        petrov.keyboard.press("ArrowUp")
    index = read(petrov, "__consilium.view.imageIndex")
    assert index == 4
    for page in (chair, ivanova):
        wait(page, f"{S}.layout === '1x1' && {S}.streams.length === 0 && "
                   f"__consilium.view.imageIndex === {index}")
        assert shown(page) == shown(petrov)
    # the former presenter follows: her keys page nothing
    chair.click(".consilium-head h1")
    chair.keyboard.press("End")
    assert read(chair, "__consilium.view.imageIndex") == index


# -- a reload is back where it was -------------------------------------------------------------


def same_state(a: dict[str, Any], b: dict[str, Any]) -> None:
    def plain(state: dict[str, Any]) -> dict[str, Any]:
        # connections are each page's own; pointers come and go
        members = {k: {**m, "connections": len(m["connections"])}
                   for k, m in state["members"].items()}
        return {**state, "members": members, "pointers": {}}
    assert plain(a) == plain(b)


def test_a_reload_resumes_the_same_state(room: Room) -> None:
    petrov, ivanova, chair = room.pages["petrov"], room.pages["ivanova"], room.chair
    ivanova.fill("[data-testid=chat-text]", "Перезагружаюсь")
    ivanova.press("[data-testid=chat-text]", "Enter")
    wait(chair, f"{S}.chat.some(c => c.text === 'Перезагружаюсь')")
    before = read(ivanova, f"{S}.seq")
    ivanova.reload()
    wait_ready(ivanova)
    wait(ivanova, f"{S}.joins > 0 && __consilium.view && "
                  f"__consilium.view.imageIndex === {read(petrov, '__consilium.view.imageIndex')}")
    join = read(ivanova, f"{S}.lastJoin")
    assert join["how"] == "changes" and join["from"] >= before  # resumed, not started afresh
    seq = read(chair, f"{S}.seq")
    wait(ivanova, f"{S}.seq >= {seq}")
    wait(chair, f"{S}.seq === {read(ivanova, f'{S}.seq')}")
    same_state(read(ivanova, f"{S}.state"), read(chair, f"{S}.state"))
    assert read(ivanova, f"{S}.members['dev:ivanova'].online") is True
    # the presenter reloads: still presenting, the same view, and drives again
    index = read(petrov, "__consilium.view.imageIndex")
    petrov.reload()
    wait_ready(petrov)
    wait(petrov, f"{S}.joins > 0 && {S}.presenting && __consilium.view && "
                 f"__consilium.view.imageIndex === {index}")
    assert read(petrov, f"{S}.lastJoin.how") == "changes"
    petrov.click("[data-testid=viewport]")
    petrov.keyboard.press("ArrowDown")
    for page in (chair, ivanova):
        wait(page, f"__consilium.view.imageIndex === {index + 1}")


def test_after_a_server_restart_everyone_is_back_by_themselves(room: Room) -> None:
    web = room.world.web
    joins = {user: read(page, f"{S}.joins") for user, page in room.pages.items()}
    seq = read(room.chair, f"{S}.seq")
    web.stop()
    for page in room.everyone:
        wait(page, f"{S}.connected === false")
    web.start()  # the same port and data: the pages reconnect on their own
    for user, page in room.pages.items():
        wait(page, f"{S}.connected === true && {S}.joins > {joins[user]} && "
                   f"{S}.members['dev:{user}'].online", timeout=60_000)
        join = read(page, f"{S}.lastJoin")
        assert join["from"] >= seq, (user, join)  # resumed from what it had
    petrov, chair, ivanova = room.pages["petrov"], room.chair, room.pages["ivanova"]
    wait(petrov, f"{S}.presenting === true")
    last = read(petrov, f"{S}.seq")
    for page in (chair, ivanova):
        wait(page, f"{S}.seq >= {last}")
    same_state(read(ivanova, f"{S}.state"), read(petrov, f"{S}.state"))
    index = read(petrov, "__consilium.view.imageIndex")
    petrov.click("[data-testid=viewport]")
    petrov.keyboard.press("ArrowDown")
    for page in (chair, ivanova):
        wait(page, f"__consilium.view.imageIndex === {index + 1}")


def test_the_page_is_in_russian_for_a_russian_reader(room: Room) -> None:
    check_language(room.pages["ivanova"], "ru", "the consilium page")


# -- the end -----------------------------------------------------------------------------------


def test_the_chair_ends_it_and_the_case_timeline_keeps_it(room: Room) -> None:
    chair = room.chair
    chair.click("[data-testid=consilium-end]")  # the dialog is accepted
    for page in room.everyone:
        wait(page, f"{S}.status === 'ended' && {S}.closed === 'ended'")
        assert page.locator("[data-testid=chat-send]").is_visible() is False
    timeline = room.world.get("ivanova", f"/api/cases/{room.case_id}/history")
    events = [json.loads(e["detail"]) for e in timeline if e["kind"] == "consilium"]
    kinds = [e["event"] for e in events]
    assert {"opened", "joined", "presented", "chat", "ended"} <= set(kinds), kinds
    said = [e["text"] for e in events if e["event"] == "chat"]
    assert "Очаг 9 мм, что видите в S6?" in said and "Перезагружаюсь" in said
    presenters = {e["session"] for e in events if e["event"] == "presented"}
    assert presenters == {room.session_id}
    for user, errors in room.errors.items():
        assert not errors, (user, errors)


# -- a scheduled one -----------------------------------------------------------------------------


def test_a_scheduled_consilium_waits_for_the_chair_to_open_it(room: Room) -> None:
    web = room.world.web.url
    chair, petrov = room.chair, room.pages["petrov"]
    open_page(petrov, web + "/")
    open_page(chair, f"{web}/viewer/cases/{room.case_id}")
    wait(chair, f"__consilium.consult.consilia.includes('{room.session_id}')")  # the ended one
    known = read(chair, "__consilium.consult.consilia")
    chair.click("[data-testid=consilium-call]")
    chair.check("[data-testid=invitee][value='dev:petrov']")
    chair.fill("[data-testid=consilium-title]", "Разбор перед операцией")
    chair.fill("[data-testid=consilium-day]", "2099-01-01")  # past the 90 days ahead: refused
    chair.fill("[data-testid=consilium-time]", "10:30")
    chair.click("[data-testid=consilium-schedule]")
    chair.wait_for_selector("[data-testid=consilium-error]:visible")
    tomorrow = read(chair, "new Date(Date.now() + 86400000).toISOString().slice(0, 10)")
    chair.fill("[data-testid=consilium-day]", tomorrow)
    chair.click("[data-testid=consilium-schedule]")
    wait(chair, f"__consilium.consult.consilia.length === {len(known) + 1}")
    session_id = next(s for s in read(chair, "__consilium.consult.consilia") if s not in known)
    row = f"tr[data-session='{session_id}']"
    assert chair.get_attribute(f"[data-testid=case-consilia] {row}", "data-status") == \
        "scheduled"
    # the scheduled time, in the region's zone, is the one typed
    when = chair.get_attribute(f"[data-testid=case-consilia] {row} time", "datetime")
    assert when is not None and when.endswith("Z")
    assert chair.inner_text(f"[data-testid=case-consilia] {row} time").endswith("10:30")

    # the invitee: alerted, the row on his home page; he joins and waits
    wait(petrov, "__consilium.alerts.unread.some(a => a.kind === 'consilium-invited')")
    petrov.wait_for_selector(f"[data-testid=home-consilia] {row}[data-status=scheduled]")
    petrov.click(f"[data-testid=home-consilia] {row} [data-testid=consilium-join]")
    wait_ready(petrov)
    wait(petrov, f"{S} && {S}.joins > 0 && {S}.status === 'scheduled' && "
                 f"{S}.members['dev:petrov'].online")
    assert petrov.locator("[data-testid=chat-send]").is_visible() is False
    assert petrov.locator("[data-testid=consilium-start]").is_visible() is False

    # the chair comes and opens it: she presents, he follows
    chair.goto(f"{web}/viewer/consilia/{session_id}")
    wait_ready(chair)
    wait(chair, f"{S}.joins > 0 && {S}.status === 'scheduled'")
    chair.click("[data-testid=consilium-start]")
    for page in (chair, petrov):
        wait(page, f"{S}.status === 'open' && {S}.presenter === 'dev:kuznetsova'")
    wait(chair, f"{S}.presenting && __consilium.view !== null")
    series = json.dumps(read(chair, "__consilium.view.seriesUID"))
    wait(petrov, f"__consilium.view !== null && __consilium.view.seriesUID === {series}")
    chair.click("[data-testid=consilium-end]")
    wait(petrov, f"{S}.status === 'ended'")
    for user, errors in room.errors.items():
        assert not errors, (user, errors)
