"""The console in a real browser against a real roomd: sign in, watch members come and go, kick one,
and nothing a client sent runs as script."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.bodies import joining, member_fields
from tests.browser import artifacts, headless_chromium
from tests.server_process import running_roomd

pytestmark = pytest.mark.slow

KEY = "console-key-for-tests"
HOSTILE = '<script>window.__pwned = 1</script><img src="x" onerror="window.__pwned = 2">'


async def until(check: Any, *, within: float = 15.0) -> None:
    """Poll the browser (in another thread's world: real time) until `check()` is true."""
    with trio.fail_after(within):
        while not await trio.to_thread.run_sync(check):  # noqa: ASYNC110  (a browser, not a trio task)
            await trio.sleep(0.1)


async def click_until_asked(driver: Any, selector: str) -> None:
    """Click the button (found again if the page redrew it in between) until its question shows."""
    from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    for _ in range(20):
        try:
            driver.find_element(By.CSS_SELECTOR, selector).click()
        except StaleElementReferenceException:
            await trio.sleep(0.05)
            continue
        try:
            driver.switch_to.alert  # noqa: B018  (raises until the confirm dialog is open)
            return
        except NoAlertPresentException:
            await trio.sleep(0.05)
    raise AssertionError(f"{selector} could not be clicked")


async def test_the_console_shows_rooms_live_and_acts_on_them(tmp_path: Path) -> None:
    env = {"ROOMD_AUTH__ADMIN_KEY": KEY, "ROOMD_KINDS__MULTI_ROOM__HEARTBEAT_TIMEOUT": "3"}
    async with running_roomd(tmp_path, **env) as server, httpx.AsyncClient(base_url=server.base_url) as http:
        with headless_chromium(tmp_path / "profile") as browser:
            from selenium.webdriver.common.by import By

            driver: Any = browser
            await trio.to_thread.run_sync(driver.get, f"{server.base_url}/console")
            assert driver.find_element(By.NAME, "key")  # the sign-in form first
            driver.find_element(By.NAME, "key").send_keys("wrong")
            driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            await until(lambda: "not the admin key" in driver.page_source)
            driver.find_element(By.NAME, "key").send_keys(KEY)
            driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            await until(lambda: "live" in driver.find_element(By.ID, "status").text)

            created = await http.post("/weapp/multi_room/create_room", json=member_fields("alice", roomName=HOSTILE))
            room_id = created.json()["roomID"]
            for user in ("bob", "carol"):
                assert (await http.post("/weapp/multi_room/add_pusher", json=joining(user, room_id))).json()[
                    "code"
                ] == 0

            def members() -> set[str]:  # read in one script: the page redraws every second
                script = "return Array.from(document.querySelectorAll(arguments[0])).map(row => row.dataset.member)"
                return set(driver.execute_script(script, f'.room[data-room="{room_id}"] tr.member'))

            await until(lambda: members() == {"alice", "bob", "carol"})
            assert HOSTILE in driver.find_element(By.CSS_SELECTOR, f'.room[data-room="{room_id}"] .info').text
            assert driver.execute_script("return window.__pwned") is None  # shown as text, never run

            async def keep_alive(users: tuple[str, ...], stop: trio.Event) -> None:
                while not stop.is_set():
                    for user in users:
                        await http.post("/weapp/multi_room/pusher_heartbeat", json={"roomID": room_id, "userID": user})
                    await trio.sleep(0.5)

            stop = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(keep_alive, ("alice", "carol"), stop)  # bob stops heartbeating
                await until(lambda: members() == {"alice", "carol"})
                (artifacts() / "console.png").write_bytes(driver.get_screenshot_as_png())
                kick = driver.find_element(
                    By.CSS_SELECTOR, f'.room[data-room="{room_id}"] button.kick[data-member="carol"]'
                )
                kick.click()
                driver.switch_to.alert.accept()  # "Kick carol?"
                await until(lambda: members() == {"alice"})
                stop.set()
            beat = await http.post("/weapp/multi_room/pusher_heartbeat", json={"roomID": room_id, "userID": "carol"})
            assert beat.json()["code"] == 5
            assert driver.execute_script("return window.__pwned") is None
    assert (artifacts() / "console.png").stat().st_size > 10_000
    assert any("member left user=carol reason=kicked" in line for line in server.output)
