"""The page at ``/`` as a player uses it, in chromium against a real ``ranker serve``: live ranks
pushed to every open page, a player found, boards and periods switched, pages walked, the
service stopped (or its Redis lost) and the page back by itself without a reload, the form's
errors placed at their fields, and a phone's width."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
from playwright.async_api import Page, expect

from ranker.settings import Settings
from tests.browser.conftest import ARTIFACTS, DESKTOP, PHONE, Pages, Service
from tests.fixtures.proxy import TcpProxy
from tests.fixtures.ranker import ADMIN_KEY, READ_KEY, WRITE_KEY, api_process, auth_headers

#: How long a change may take to reach an open page: a feed reads every 250 ms.
LIVE_MS = 1000
#: How long the page may take to say the service is away, or back (it retries every 1 to 5 s).
OUTAGE_MS = 8000
DAY_MS = 86_400_000
STALE = re.compile(r"\bstale\b")


#: For each element, whether it or an ancestor is a live region.
LIVE_ANCESTORS = """elements => elements.map(e => {
    for (let n = e; n; n = n.parentElement) {
        const role = n.getAttribute('role');
        if (n.hasAttribute('aria-live') || ['status', 'log', 'alert'].includes(role)) return true;
    }
    return false;
})"""


def row(page: Page, user_id: int, table: str = "top") -> Any:
    return page.locator(f"#{table}-rows tr[data-user='{user_id}']")


async def shown(page: Page, table: str = "top") -> list[tuple[int, int, str, str]]:
    """The rows of a table: (rank, user id, name, score as shown)."""
    cells = await page.locator(f"#{table}-rows tr").evaluate_all(
        """rows => rows.map(r => [r.querySelector('.rank').textContent, r.dataset.user,
            r.querySelector('.name').textContent, r.querySelector('.score').textContent])"""
    )
    return [(int(rank), int(user), name, score) for rank, user, name, score in cells]


async def live(page: Page) -> None:
    """Wait until the page says it is live and shows the board."""
    await expect(page.locator("#status")).to_have_attribute("data-state", "live")
    await expect(page.locator("#board-meta")).to_contain_text("updated")


async def fill_submit(page: Page, user_id: int, score: str, name: str = "", key: str = "") -> None:
    form = page.get_by_role("region", name="Submit score")
    await form.get_by_label("Player id").fill(str(user_id))
    await form.get_by_label("Name").fill(name)
    await form.get_by_label("Score").fill(score)
    if key:
        await form.get_by_label("API key").fill(key)
    await form.get_by_role("button", name="Submit score").click()


async def find(page: Page, user_id: int | str) -> None:
    region = page.get_by_role("region", name="Find a player")
    await region.get_by_label("Player id").fill(str(user_id))
    await region.get_by_role("button", name="Find").click()


async def test_a_score_submitted_on_one_page_reaches_another_within_a_second(
    service: Service, pages: Pages
) -> None:
    for user_id, score in [(1, 5000), (2, 3000), (3, 100)]:
        await service.submit(user_id, score)
    watcher = await pages.open(service.url)
    player = await pages.open(service.url)
    await live(watcher)
    await live(player)
    assert await shown(watcher) == [
        (1, 1, "player 1", "5,000"),
        (2, 2, "player 2", "3,000"),
        (3, 3, "player 3", "100"),
    ]

    # The form asks for the key; the test types it in.
    await expect(player.get_by_label("API key")).to_be_visible()
    await fill_submit(player, 7, "1200", name="Nova", key=WRITE_KEY)

    entry = row(watcher, 7)
    await expect(entry.locator(".rank")).to_have_text("3", timeout=LIVE_MS)
    await expect(entry.locator(".name")).to_have_text("Nova")
    await expect(entry.locator(".score")).to_have_text("1,200")
    # What changed since the last update is marked, with words for screen readers.
    await expect(entry.locator(".move")).to_have_attribute("data-move", "new")
    await expect(entry.locator(".move .sr-only")).to_have_text("new on this page")
    passed = row(watcher, 3).locator(".move")
    await expect(passed).to_have_attribute("data-move", "down")
    await expect(passed.locator("[aria-hidden='true']")).to_have_text("▼")
    await expect(passed.locator(".sr-only")).to_have_text("down from rank 3")
    await expect(row(watcher, 1).locator(".move")).not_to_have_attribute("data-move", "down")
    await expect(player.locator("#submit-message")).to_contain_text("Score submitted for Nova")
    await expect(player.locator("#submit-message")).to_contain_text("All modes: rank 3")

    # The key is kept for the session: the next submission does not ask again, and moves the
    # player up (an arrow on the other page).
    await expect(player.get_by_label("API key")).to_be_hidden()
    assert await player.evaluate("sessionStorage.getItem('ranker.api-key')") == WRITE_KEY
    await fill_submit(player, 7, "4000")
    await expect(entry.locator(".rank")).to_have_text("1", timeout=LIVE_MS)
    await expect(entry.locator(".move")).to_have_attribute("data-move", "up")
    await expect(entry.locator(".move .sr-only")).to_have_text("up from rank 3")
    # The status line said nothing while the table moved.
    await expect(watcher.locator("#status")).to_have_text("Live: ranks update as scores come in.")


async def test_find_a_player_shows_their_place_and_the_players_around_them(
    service: Service, pages: Pages
) -> None:
    for user_id in range(1, 31):
        await service.submit(user_id, user_id * 10, username=f"racer {user_id}")
    page = await pages.open(service.url)
    await live(page)

    await find(page, 15)

    place = (await service.http.get("/api/boards/global/players/15")).json()
    assert (place["rank"], place["score"], place["members"]) == (16, 150, 30)
    await expect(page.locator("#standing-name")).to_have_text("racer 15 (player 15)")
    await expect(page.locator("#standing-rank")).to_have_text("16 of 30")
    await expect(page.locator("#standing-score")).to_have_text("150")
    percentile = f"{place['percentile']:.2f}"
    await expect(page.locator("#standing-percentile")).to_contain_text(percentile)
    around = await shown(page, "around")
    assert [user for _, user, _, _ in around] == list(range(20, 9, -1))
    await expect(page.locator("#around-rows tr[aria-current='true']")).to_have_count(1)
    await expect(row(page, 15, "around")).to_have_attribute("aria-current", "true")

    await find(page, 999)

    await expect(page.locator("#find-message")).to_have_text(
        "Player 999 has no score on All modes this period."
    )
    await expect(page.locator("#standing")).to_be_hidden()
    await expect(page.locator("#around-rows tr")).to_have_count(0)


class Clock:
    """The wall clock of an in-process API, moved back by whole weeks."""

    def __init__(self) -> None:
        self.weeks_ago = 0

    def __call__(self) -> int:
        return int(time.time() * 1000) - self.weeks_ago * 7 * DAY_MS


async def test_the_table_follows_the_board_and_the_period_picked(
    settings: Settings, loaded: None, serve: Callable[..., Awaitable[Service]], pages: Pages
) -> None:
    # Sessions of two and of one week ago, placed by an in-process API with its clock moved;
    # then the real service, on the real clock, for this week's.
    clock = Clock()
    periods = {}
    async with api_process(settings, clock) as http:
        created = await http.put(
            "/api/boards/weekly-best",
            json={
                "title": "Best run this week",
                "operator": "best",
                "reset": "weekly",
                "retain_periods": 4,
            },
            headers=auth_headers(ADMIN_KEY),
        )
        assert created.status_code == 201, created.text
        for weeks_ago, user_id, score in [(2, 21, 200), (1, 11, 100), (1, 12, 150)]:
            clock.weeks_ago = weeks_ago
            body = {"user_id": user_id, "score": score}
            answer = await http.post("/api/leaderboard/submit", json=body)
            assert answer.status_code == 200, answer.text
            periods[weeks_ago] = answer.json()["boards"]["weekly-best"]["period"]
    service = await serve()
    await service.submit(1, 50)
    page = await pages.open(service.url)
    board = page.get_by_label("Board", exact=True)
    period = page.get_by_label("Period", exact=True)
    rows = page.locator("#top-rows tr")
    await live(page)
    assert [user for _, user, _, _ in await shown(page)] == [21, 12, 11, 1]

    await board.select_option(label="Best run this week")

    await expect(page.locator("#board-title")).to_have_text("Best run this week")
    await expect(rows).to_have_count(1)
    assert await shown(page) == [(1, 1, "player 1", "50")]
    options = await period.locator("option").all_text_contents()
    assert options[0].startswith("This week (")
    assert options[1:] == ["Last week", f"{periods[2]} · 1 player"]

    await period.select_option(label="Last week")

    await expect(page.locator("#board-meta")).to_contain_text(f"Last week ({periods[1]})")
    await expect(rows).to_have_count(2)
    assert [(user, score) for _, user, _, score in await shown(page)] == [(12, "150"), (11, "100")]

    await period.select_option(periods[2])

    await expect(page.locator("#board-meta")).to_contain_text(periods[2])
    await expect(rows).to_have_count(1)
    assert await shown(page) == [(1, 21, "player 21", "200")]
    # The choice is in the address: a reload comes back to it.
    await page.reload()
    await expect(period).to_have_value(periods[2])
    await expect(board).to_have_value("weekly-best")
    await expect(row(page, 21)).to_be_visible()

    await board.select_option(label="All modes")

    await expect(page.locator("#board-title")).to_have_text("All modes")
    await expect(period.locator("option")).to_have_text(["All time"])
    await expect(rows).to_have_count(4)
    # Still live after all that switching.
    await service.submit(99, 999)
    await expect(row(page, 99).locator(".rank")).to_have_text("1", timeout=LIVE_MS)


async def test_next_page_walks_the_board_and_back_returns_to_the_live_top(
    service: Service, pages: Pages
) -> None:
    for user_id in range(1, 26):
        await service.submit(user_id, 1000 - user_id * 10)
    page = await pages.open(service.url)
    await live(page)
    ranks = page.locator("#top-rows .rank")
    await expect(ranks).to_have_text([str(rank) for rank in range(1, 11)])
    await expect(page.get_by_role("button", name="Back to the live top")).to_be_hidden()

    await page.get_by_role("button", name="Next page").click()

    await expect(ranks).to_have_text([str(rank) for rank in range(11, 21)])
    await expect(page.locator("#page-where")).to_have_text("Ranks 11\N{EN DASH}20")
    assert [user for _, user, _, _ in await shown(page)] == list(range(11, 21))
    # A later page follows the board as well: a score that lands on it shows up.
    await service.submit(500, 845)  # between player 15 (850) and 16 (840): rank 16
    await expect(row(page, 500).locator(".rank")).to_have_text("16", timeout=LIVE_MS)

    await page.get_by_role("button", name="Next page").click()

    await expect(ranks).to_have_text([str(rank) for rank in range(21, 27)])
    await expect(page.get_by_role("button", name="Next page")).to_be_disabled()
    await page.get_by_role("button", name="Previous page").click()
    await expect(ranks).to_have_text([str(rank) for rank in range(11, 21)])

    await page.get_by_role("button", name="Back to the live top").click()

    await expect(ranks).to_have_text([str(rank) for rank in range(1, 11)])
    await expect(page.get_by_role("button", name="Back to the live top")).to_be_hidden()
    await service.submit(600, 5000)
    await expect(row(page, 600).locator(".rank")).to_have_text("1", timeout=LIVE_MS)


async def test_an_outage_is_said_plainly_and_the_page_comes_back_by_itself(
    serve: Callable[..., Awaitable[Service]], pages: Pages
) -> None:
    service = await serve()
    await service.submit(1, 100, username="Ada")
    page = await pages.open(service.url)
    await live(page)

    service.process.terminate()
    await asyncio.to_thread(service.process.wait, 30)

    status = page.locator("#status")
    await expect(status).to_have_text(
        "Can't reach the leaderboard service. Retrying…", timeout=OUTAGE_MS
    )
    await expect(status).to_have_attribute("data-state", "unreachable")
    await expect(status).to_have_attribute("aria-live", "polite")
    await expect(page.locator("#board-section")).to_have_class(STALE)
    await expect(page.locator(".stale-note")).to_be_visible()
    await expect(row(page, 1)).to_be_visible()  # the last ranks stay, marked stale
    await expect(page.locator("body")).not_to_contain_text("Failed to fetch")

    again = await serve(port=service.port)
    await again.submit(2, 200, username="Grace")

    await expect(status).to_have_text(
        "Connected again: the leaderboard is live.", timeout=OUTAGE_MS
    )
    await expect(page.locator("#board-section")).not_to_have_class(STALE)
    await expect(row(page, 2).locator(".rank")).to_have_text("1")
    assert [name for _, _, name, _ in await shown(page)] == ["Grace", "Ada"]


async def test_redis_lost_behind_the_service_is_said_and_the_page_recovers(
    make_settings: Callable[..., Settings],
    redis_server_url: str,
    serve: Callable[..., Awaitable[Service]],
    pages: Pages,
) -> None:
    host, port = urlsplit(redis_server_url).hostname, urlsplit(redis_server_url).port
    assert host is not None and port is not None
    with TcpProxy(host, port) as proxy:
        settings = make_settings(redis_url=f"redis://127.0.0.1:{proxy.port}/0")
        service = await serve(settings=settings)
        await service.submit(1, 100)
        page = await pages.open(service.url)
        await live(page)

        proxy.cut("refuse")

        status = page.locator("#status")
        await expect(status).to_have_text(
            "The leaderboard service can't read scores right now. Retrying…", timeout=OUTAGE_MS
        )
        await expect(page.locator("#board-section")).to_have_class(STALE)
        await expect(row(page, 1)).to_be_visible()

        proxy.restore()
        await service.submit(2, 200)

        await expect(status).to_have_text(
            "Connected again: the leaderboard is live.", timeout=OUTAGE_MS
        )
        await expect(page.locator("#board-section")).not_to_have_class(STALE)
        await expect(row(page, 2).locator(".rank")).to_have_text("1")


async def test_the_form_shows_each_refusal_next_to_the_field_it_names(
    service: Service, pages: Pages
) -> None:
    page = await pages.open(service.url)
    await live(page)
    form = page.get_by_role("region", name="Submit score")
    key_error = page.locator("#f-key-error")
    score_error = page.locator("#f-score-error")

    await fill_submit(page, 5, "10", key="not-a-key-of-this-service")

    await expect(key_error).to_contain_text("The API key is not valid.")
    await expect(form.get_by_label("API key")).to_have_attribute("aria-invalid", "true")
    await expect(score_error).to_be_hidden()

    await fill_submit(page, 5, "10", key=READ_KEY)

    await expect(key_error).to_contain_text("this request needs write")

    for score in ["-5", "12.5", "lots"]:
        await fill_submit(page, 5, score, key=WRITE_KEY)
        expected = await _api_message(service.http, score)
        await expect(score_error).to_have_text(expected)
        await expect(form.get_by_label("Score")).to_have_attribute("aria-invalid", "true")
        await expect(form.get_by_label("Score")).to_be_focused()
        await expect(key_error).to_be_hidden()
        await expect(page.locator("#submit-message")).to_have_text(
            "The score was not submitted: see the marked fields."
        )
    assert (await service.http.get("/api/boards/global/players/5")).status_code == 404

    await fill_submit(page, 5, "10", name="x" * 40)

    await expect(page.locator("#f-name-error")).to_contain_text(
        re.compile("at most 32 characters", re.IGNORECASE)
    )
    await expect(score_error).to_be_hidden()


async def _api_message(http: httpx.AsyncClient, score: str) -> str:
    """What the API says of a score, as the page words it (a sentence)."""
    value: Any = int(score) if score.lstrip("-").isdigit() else score
    answer = await http.post("/api/leaderboard/submit", json={"user_id": 5, "score": value})
    assert answer.status_code == 422, answer.text
    (problem,) = [e for e in answer.json()["errors"] if e["field"] == "score"]
    text = str(problem["message"]).removeprefix("Value error, ")
    text = text[0].upper() + text[1:]
    return text if text.endswith(".") else text + "."


async def test_a_phone_has_no_sideways_scrolling_and_every_input_a_label(
    service: Service, pages: Pages
) -> None:
    for user_id in range(1, 16):
        name = "W" * 32 if user_id == 3 else f"player of the week {user_id}"
        await service.submit(user_id, 1_000_000_000 - user_id * 7_777, username=name)
    phone = await pages.open(service.url, viewport=PHONE)
    desktop = await pages.open(service.url, viewport=DESKTOP)
    # The keyboard starts at the board picker.
    await phone.keyboard.press("Tab")
    await expect(phone.get_by_label("Board", exact=True)).to_be_focused()
    for page in (phone, desktop):
        await live(page)
        await find(page, 3)
        await expect(page.locator("#standing-rank")).to_have_text("3 of 15")

    overflow = await phone.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert overflow[0] <= overflow[1], overflow

    labelled = {
        "Board": phone.get_by_label("Board", exact=True),
        "Period": phone.get_by_label("Period", exact=True),
        "find: Player id": phone.get_by_role("region", name="Find a player").get_by_label(
            "Player id", exact=True
        ),
        "submit: Player id": phone.get_by_role("region", name="Submit score").get_by_label(
            "Player id", exact=True
        ),
        "Name": phone.get_by_label("Name (optional)", exact=True),
        "Score": phone.get_by_label("Score", exact=True),
        "Game mode": phone.get_by_label("Game mode", exact=True),
        "API key": phone.get_by_label("API key", exact=True),
    }
    for name, locator in labelled.items():
        assert await locator.count() == 1, name
        assert await locator.evaluate("e => ['INPUT', 'SELECT'].includes(e.tagName)"), name
    assert await phone.locator("input, select").count() == len(labelled)
    await expect(phone.get_by_label("Game mode").locator("option")).to_have_text(["solo", "team"])
    # No live region holds a table: a tick is not read out (the status lines speak).
    assert await phone.locator("table").evaluate_all(LIVE_ANCESTORS) == [False, False]

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await desktop.screenshot(path=ARTIFACTS / "desktop.png", full_page=True)
    await phone.screenshot(path=ARTIFACTS / "phone.png", full_page=True)
    print(f"screenshots: {ARTIFACTS / 'desktop.png'} {ARTIFACTS / 'phone.png'}")
