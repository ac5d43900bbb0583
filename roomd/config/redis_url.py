"""Reading `cluster.redis_url` when it names Sentinels rather than one Redis server."""

from __future__ import annotations

SENTINEL_SCHEME = "redis+sentinel://"


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], str, int, str | None] | None:
    """(sentinels, primary name, db, password) of a `redis+sentinel://[:password@]h:p,h:p/name[/db]`
    URL; None for any other URL. ValueError when it is malformed."""
    if not url.startswith(SENTINEL_SCHEME):
        return None
    rest = url[len(SENTINEL_SCHEME) :]
    password = None
    if "@" in rest:
        credentials, rest = rest.rsplit("@", 1)
        password = credentials.split(":", 1)[-1] or None
    hosts, _, path = rest.partition("/")
    parts = [part for part in path.split("/") if part]
    if not hosts or not parts or len(parts) > 2:
        raise ValueError("expected redis+sentinel://host:port[,host:port...]/<primary name>[/db]")
    sentinels = []
    for host in hosts.split(","):
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit():
            raise ValueError(f"{host!r} is not host:port")
        sentinels.append((name, int(port)))
    db = int(parts[1]) if len(parts) == 2 and parts[1].isdigit() else 0
    if len(parts) == 2 and not parts[1].isdigit():
        raise ValueError(f"{parts[1]!r} is not a database number")
    return sentinels, parts[0], db, password
