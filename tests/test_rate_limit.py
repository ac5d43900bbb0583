"""Creation, login and connection limits: per client address (an IPv6 client by its /64) and per userID,
on explicit times."""

from __future__ import annotations

import pytest

from roomd.client_address import limit_key
from roomd.http.connection_limit import ConnectionsPerAddress
from roomd.web.rate_limit import MAX_KEYS, CreationLimits, LoginLimit, TokenBuckets


def drain(buckets: TokenBuckets, key: str, now: float) -> int:
    """Take tokens for `key` at `now` until none is left; how many there were."""
    taken = 0
    while buckets.wait_needed(key, now) == 0:
        buckets.take(key, now)
        taken += 1
    return taken


def limits(
    *, address_rate: float = 5, address_burst: int = 100, user_rate: float = 1, user_burst: int = 10
) -> CreationLimits:
    return CreationLimits(
        per_address=TokenBuckets(rate=address_rate, burst=address_burst),
        per_user=TokenBuckets(rate=user_rate, burst=user_burst),
    )


def test_a_new_key_has_a_full_burst_then_must_wait_for_the_refill() -> None:
    buckets = TokenBuckets(rate=2, burst=3)
    assert drain(buckets, "a", 0.0) == 3
    assert buckets.wait_needed("a", 0.0) == pytest.approx(0.5)  # one token at 2 per second
    assert buckets.wait_needed("a", 0.25) == pytest.approx(0.25)
    assert buckets.wait_needed("a", 0.5) == 0
    assert drain(buckets, "b", 0.0) == 3  # every key has its own bucket


def test_the_wait_a_refusal_names_is_rounded_up_never_down() -> None:
    creation = limits(user_rate=4, user_burst=1)  # a token every 0.25 s
    assert creation.refusal("10.0.0.1", "alice", 0.0) is None
    why = creation.refusal("10.0.0.1", "alice", 0.0) or ""
    assert why.endswith("; retry in 0.3 s"), why  # 0.25 s: a client told 0.2 s would be refused again


def test_the_refill_is_continuous_and_stops_at_the_burst() -> None:
    buckets = TokenBuckets(rate=2, burst=3)
    drain(buckets, "a", 0.0)
    assert drain(buckets, "a", 1.0) == 2  # two tokens came back in one second
    assert drain(buckets, "a", 1.25) == 0  # half a token: not enough yet
    assert drain(buckets, "a", 1.5) == 1
    assert drain(buckets, "a", 1000.0) == 3  # a long pause gives back the burst, no more


def test_a_refund_gives_the_token_back() -> None:
    buckets = TokenBuckets(rate=1, burst=2)
    drain(buckets, "a", 0.0)
    buckets.refund("a", 0.0)
    assert buckets.wait_needed("a", 0.0) == 0
    assert drain(buckets, "a", 0.0) == 1


def test_refunds_never_fill_a_bucket_above_its_burst() -> None:
    buckets = TokenBuckets(rate=1, burst=3)
    buckets.take("a", 0.0)
    for _ in range(5):  # more refunds than takes, e.g. a creation refused twice over
        buckets.refund("a", 0.0)
    assert drain(buckets, "a", 0.0) == 3
    buckets.take("a", 10.0)
    buckets.refund("a", 20.0)  # refilled to the burst meanwhile: the refund adds nothing
    assert drain(buckets, "a", 20.0) == 3


def test_a_refund_for_a_key_never_seen_keeps_nothing() -> None:
    buckets = TokenBuckets(rate=1, burst=3)
    buckets.refund("a", 0.0)  # a bucket that is not kept is a full one
    assert len(buckets) == 0
    assert drain(buckets, "a", 0.0) == 3


def test_buckets_are_kept_for_at_most_max_keys_least_recently_used_first_out() -> None:
    buckets = TokenBuckets(rate=1, burst=2, max_keys=2)
    buckets.take("a", 0.0)
    buckets.take("b", 0.0)
    buckets.take("a", 0.0)  # a is used again: b is now the least recently used
    buckets.take("c", 0.0)
    assert len(buckets) == 2
    assert buckets.wait_needed("b", 0.0) == 0 and drain(buckets, "b", 0.0) == 2  # forgotten: full again
    assert drain(buckets, "c", 0.0) == 1
    assert len(buckets) == 2


def test_the_default_bound_is_a_hundred_thousand_keys() -> None:
    buckets = TokenBuckets(rate=1, burst=1)
    for index in range(MAX_KEYS + 1):
        buckets.take(f"k{index}", 0.0)
    assert MAX_KEYS == 100_000 and len(buckets) == MAX_KEYS
    assert buckets.wait_needed("k0", 0.0) == 0  # the first one was forgotten
    assert buckets.wait_needed(f"k{MAX_KEYS}", 0.0) == pytest.approx(1.0)


def test_a_creation_takes_a_token_from_the_address_and_from_the_user() -> None:
    creation = limits(address_burst=3, user_burst=2)
    assert creation.refusal("10.0.0.1", "alice", 0.0) is None
    assert creation.refusal("10.0.0.1", "alice", 0.0) is None
    why = creation.refusal("10.0.0.1", "alice", 0.0)
    assert why == "user alice creates rooms faster than 1 per second (bursts of 2); retry in 1.0 s"
    assert creation.refusal("10.0.0.1", "bob", 0.0) is None  # the address had one token left
    why = creation.refusal("10.0.0.1", "carol", 0.0)
    assert why == "client 10.0.0.1 creates rooms faster than 5 per second (bursts of 3); retry in 0.2 s"


def test_a_refused_creation_takes_no_token_from_either_bucket() -> None:
    creation = limits(address_burst=5, user_burst=1)
    assert creation.refusal("10.0.0.1", "alice", 0.0) is None
    for _ in range(10):  # refused on the user's bucket: the address's is not charged
        assert creation.refusal("10.0.0.1", "alice", 0.0) is not None
    assert [creation.refusal("10.0.0.1", f"u{i}", 0.0) for i in range(4)] == [None] * 4
    assert creation.refusal("10.0.0.1", "u4", 0.0) is not None


def test_the_retry_time_in_the_detail_is_the_time_until_the_next_token() -> None:
    creation = limits(address_rate=0, user_rate=0.5, user_burst=1)
    assert creation.refusal("10.0.0.1", "alice", 0.0) is None
    assert creation.refusal("10.0.0.1", "alice", 0.0) == (
        "user alice creates rooms faster than 0.5 per second (bursts of 1); retry in 2.0 s"
    )
    assert (creation.refusal("10.0.0.1", "alice", 0.5) or "").endswith("; retry in 1.5 s")
    assert (creation.refusal("10.0.0.1", "alice", 1.0) or "").endswith("; retry in 1.0 s")
    assert creation.refusal("10.0.0.1", "alice", 2.0) is None  # the refusals took nothing meanwhile
    assert (creation.refusal("10.0.0.1", "alice", 2.0) or "").endswith("; retry in 2.0 s")


def test_a_refund_gives_back_both_tokens() -> None:
    creation = limits(address_burst=1, user_burst=1)
    assert creation.refusal("10.0.0.1", "alice", 0.0) is None
    creation.refund("10.0.0.1", "alice", 0.0)  # the directory turned the room down
    assert creation.refusal("10.0.0.1", "alice", 0.0) is None
    assert creation.refusal("10.0.0.1", "alice", 0.0) is not None


def test_a_rate_of_zero_turns_a_limit_off() -> None:
    creation = limits(address_rate=0, user_rate=0)  # the bursts stay configured (at least 1), unused
    assert not creation.per_address.enabled and not creation.per_user.enabled
    assert all(creation.refusal("10.0.0.1", "alice", 0.0) is None for _ in range(1000))
    creation.refund("10.0.0.1", "alice", 0.0)
    assert len(creation.per_address) == len(creation.per_user) == 0  # nothing is kept for a limit that is off


def test_one_limit_off_leaves_the_other_on() -> None:
    creation = limits(address_rate=0, user_burst=2)
    assert [creation.refusal("10.0.0.1", "alice", 0.0) for _ in range(2)] == [None, None]
    assert (creation.refusal("10.0.0.1", "alice", 0.0) or "").startswith("user alice ")
    assert creation.refusal("10.0.0.1", "bob", 0.0) is None  # the address is never limited
    assert len(creation.per_address) == 0


def test_credentials_take_from_their_address_bucket_and_say_when_to_retry() -> None:
    login = LoginLimit(TokenBuckets(rate=2, burst=3))
    assert [login.refusal("10.0.0.1", 0.0) for _ in range(3)] == [None] * 3
    assert login.refusal("10.0.0.1", 0.1) == (
        "client 10.0.0.1 asks for credentials faster than 2 per second (bursts of 3); retry in 0.4 s"
    )
    assert login.refusal("10.0.0.2", 0.1) is None  # another address has its own bucket
    assert login.refusal("10.0.0.1", 0.5) is None  # refilled: one more


def test_a_login_rate_of_zero_keeps_nothing() -> None:
    login = LoginLimit(TokenBuckets(rate=0, burst=1))
    assert all(login.refusal("10.0.0.1", 0.0) is None for _ in range(1000))
    assert len(login.per_address) == 0


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("10.0.0.1", "10.0.0.1"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("-", "-"),  # no address (a Unix socket): counted as it is
    ],
)
def test_limits_count_an_ipv6_client_by_its_64(address: str, key: str) -> None:
    assert limit_key(address) == key


def test_every_address_of_one_ipv6_64_shares_one_allowance() -> None:
    login = LoginLimit(TokenBuckets(rate=0.001, burst=2))
    creation = limits(address_rate=0.001, address_burst=1, user_rate=0)
    assert login.refusal("2001:db8::1", 0.0) is None and login.refusal("2001:db8::ffff:2", 0.0) is None
    assert (login.refusal("2001:db8::3", 0.0) or "").startswith("client 2001:db8::/64 asks for credentials")
    assert login.refusal("2001:db8:0:1::1", 0.0) is None  # the next /64 is another client
    assert creation.refusal("2001:db8::1", "a", 0.0) is None
    assert (creation.refusal("2001:db8::2", "b", 0.0) or "").startswith("client 2001:db8::/64 creates rooms")


def test_connections_from_one_ipv6_64_count_together() -> None:
    connections = ConnectionsPerAddress(2)
    assert connections.admit("2001:db8::1") and connections.admit("2001:db8::2")
    assert not connections.admit("2001:db8::3")
    assert connections.admit("2001:db8:0:1::1")
    connections.release("2001:db8::1")
    assert connections.admit("2001:db8::4") and connections.open_from("2001:db8::9") == 2
