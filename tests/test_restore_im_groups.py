"""After a restart, IM groups match the rooms: restored rooms have theirs made again, and a room
that closed before its group was confirmed gone has it destroyed. Against the loopback fake IM."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from roomd.actors.messages import CreateRoom, Destroy, Heartbeat
from roomd.actors.replies import Ok
from roomd.actors.system import RoomSystem, open_room_system
from roomd.auth.signers import choose_user_signer
from roomd.config import Settings
from roomd.qcloud.usersig import UserSigner
from tests.actor_helpers import member
from tests.conftest import IM_SDK_APP_ID, IM_SECRET, eventually, make_settings
from tests.fake_im import FakeIm, start_fake_im


def im_settings(fake: FakeIm, data_dir: Path) -> Settings:
    return make_settings(
        ROOMD_SERVER__PERSIST="true",
        ROOMD_SERVER__DATA_DIR=str(data_dir),
        ROOMD_IM__SDK_APP_ID=str(IM_SDK_APP_ID),
        ROOMD_IM__SECRET_KEY=IM_SECRET,
        ROOMD_IM__BASE_URL=fake.base_url,
        ROOMD_IM__TIMEOUT="1",
        ROOMD_IM__RETRY_BACKOFF="0.01",
        ROOMD_IM__MAX_ATTEMPTS="2",
    )


@dataclass
class World:
    fake: FakeIm
    settings: Settings
    signer: UserSigner

    def roomd(self) -> AbstractAsyncContextManager[RoomSystem]:
        """A roomd on the same data_dir and fake IM: one more start."""
        return open_room_system(self.settings, user_signer=self.signer)


@asynccontextmanager
async def im_world(data_dir: Path) -> AsyncIterator[World]:
    async with trio.open_nursery() as nursery:
        fake = await start_fake_im(nursery, FakeIm(IM_SDK_APP_ID, "admin", secret_key=IM_SECRET))
        settings = im_settings(fake, data_dir)
        try:
            yield World(fake, settings, choose_user_signer(settings.im).signer)
        finally:
            nursery.cancel_scope.cancel()  # the fake IM server


async def make_room(system: RoomSystem, user_id: str) -> None:
    request = CreateRoom(user_id, "a", room_id=f"r-{user_id}", first_member=member(user_id))
    made = await system.router.create_room("multi_room", request, deadline=trio.current_time() + 5)
    assert made == Ok(f"r-{user_id}")


async def test_restored_rooms_get_their_groups_back(tmp_path: Path) -> None:
    async with im_world(tmp_path) as world:
        fake = world.fake
        async with world.roomd() as system:
            await make_room(system, "alice")
        assert fake.groups == {"r-alice": "a"}  # kept across the stop
        del fake.groups["r-alice"]  # lost on IM's side while roomd was down
        async with world.roomd():
            await eventually(lambda: "r-alice" in fake.groups, within=5)
        assert fake.calls_for("r-alice").count("create_group") == 2


async def test_a_group_not_yet_destroyed_at_the_stop_is_destroyed_at_the_next_start(tmp_path: Path) -> None:
    async with im_world(tmp_path) as world:
        fake = world.fake
        deadline = trio.current_time() + 5
        async with world.roomd() as system:
            await make_room(system, "alice")
            fake.behave(mode="http_500", only_api="destroy_group")  # IM fails every try
            destroyed = await system.router.call_room("multi_room", "r-alice", Destroy("alice"), deadline=deadline)
            assert destroyed == Ok(None)
            await eventually(lambda: [c.answered for c in fake.calls if c.api == "destroy_group"] == ["http 500"] * 2)
        assert "r-alice" in fake.groups  # closed in roomd, its group still in IM
        fake.behave(mode="ok")
        async with world.roomd() as system:
            await eventually(lambda: "r-alice" not in fake.groups, within=5)
            directory = system.directory("multi_room")
            assert directory is not None and directory.room_count == 0  # closed rooms do not come back
            store = system.store
            await eventually(lambda: store.load("multi_room") == [], within=5)  # nothing left to do
        destroys = len(fake.calls_for("r-alice"))
        async with world.roomd():
            pass
        assert len(fake.calls_for("r-alice")) == destroys  # the third start has nothing to destroy


async def test_im_failing_at_the_restart_leaves_a_live_rooms_group_alone(tmp_path: Path) -> None:
    async with im_world(tmp_path) as world:
        fake = world.fake
        async with world.roomd() as system:
            await make_room(system, "alice")
        fake.behave(mode="http_500", only_api="create_group")  # IM fails every try at the restart
        async with world.roomd() as system:
            await eventually(lambda: len([c for c in fake.calls if c.answered == "http 500"]) == 2, within=5)
            await eventually(lambda: system.im.queue_depth == 0, within=5)
            alive = await system.router.call_room(
                "multi_room", "r-alice", Heartbeat("alice"), deadline=trio.current_time() + 2
            )
            assert alive == Ok(None)
        assert "r-alice" in fake.groups  # a failed re-creation destroys nothing
        assert "destroy_group" not in fake.calls_for("r-alice")


async def test_a_restored_room_that_closes_at_once_keeps_no_group(tmp_path: Path) -> None:
    async with im_world(tmp_path) as world:
        fake = world.fake
        async with world.roomd() as system:
            for user in ("alice", "bob"):
                await make_room(system, user)
        fake.behave(delays=(0.8,), only_api="create_group", times=1)  # the first re-creation is slow
        async with world.roomd() as system:
            gone = await system.router.call_room(
                "multi_room", "r-bob", Destroy("bob"), deadline=trio.current_time() + 2
            )
            assert gone == Ok(None)
            await eventually(lambda: system.im.queue_depth == 0, within=5)
        assert set(fake.groups) == {"r-alice"}
        assert fake.calls_for("r-bob")[-1] == "destroy_group"
