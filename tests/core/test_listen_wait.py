"""wait_until_listening / async_wait_until_listening: selection, expect forms, timeouts."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sdready._exceptions import NotifyError
from sdready._listen._listeners import (
    Listener,
    ListenerSnapshot,
    ListenTimeoutError,
    async_wait_until_listening,
    listening_sockets,
    snapshot_listeners,
    validate_wait_options,
    wait_until_listening,
)

WAIT = 10.0  # generous: a wait that succeeds returns long before


@pytest.fixture(autouse=True)
def no_foreign_listeners() -> Iterator[None]:
    """The default selection looks at every listener of the process: start from none."""
    deadline = time.monotonic() + 2  # grace for a server another test is still closing
    while listening_sockets() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert listening_sockets() == [], "an earlier test leaked a listening socket"
    yield


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def bound(host: str = "127.0.0.1", family: int = socket.AF_INET) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, 0))
    return sock


def listening(host: str = "127.0.0.1") -> socket.socket:
    sock = bound(host)
    sock.listen()
    return sock


def port_of(sock: socket.socket) -> int:
    port: int = sock.getsockname()[1]
    return port


class LateListen:
    """Calls ``listen()`` on bound sockets from another thread after *delay*."""

    def __init__(self, *socks: socket.socket, delay: float = 0.05) -> None:
        self.about_to_listen = threading.Event()
        self._socks = socks
        self._delay = delay
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        time.sleep(self._delay)
        self.about_to_listen.set()
        for sock in self._socks:
            sock.listen()

    def __enter__(self) -> LateListen:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join(timeout=30)


# --- default selection ---------------------------------------------------------------


def test_an_existing_listener_is_selected_at_once() -> None:
    with listening() as server:
        began = time.monotonic()
        found = wait_until_listening(WAIT)
        assert [item.fd for item in found] == [server.fileno()]
        assert time.monotonic() - began < WAIT / 2  # sanity only


def test_a_late_listener_is_detected_after_listen_never_before() -> None:
    for delay in (0.0, 0.001, 0.003, 0.02):
        with bound() as server, LateListen(server, delay=delay) as late:
            found = wait_until_listening(WAIT)
            assert late.about_to_listen.is_set()
            assert [item.port for item in found] == [port_of(server)]


def test_without_a_listener_the_wait_times_out_naming_what_is_missing() -> None:
    with bound(), pytest.raises(ListenTimeoutError) as caught:
        wait_until_listening(0.05)
    error = caught.value
    assert isinstance(error, TimeoutError)
    assert isinstance(error, NotifyError)
    message = str(error)
    assert "timed out after 0.05 s" in message
    # No baseline taken (as for sdready exec): no startup code to speak of.
    assert "expected but not found: a listening socket;" in message
    assert "found: no listening socket" in message
    assert error.found == ()
    assert error.missing == ("a listening socket",)


def test_timeout_zero_checks_once() -> None:
    with pytest.raises(ListenTimeoutError):
        wait_until_listening(0)
    with listening() as server:
        assert wait_until_listening(0)[0].fd == server.fileno()


def test_timeout_none_waits_until_the_listener_comes() -> None:
    with bound() as server, LateListen(server, delay=0.05):
        assert wait_until_listening(None)[0].port == port_of(server)


def test_stop_ends_the_wait_early_with_an_empty_list() -> None:
    stop = threading.Event()
    timer = threading.Timer(0.05, stop.set)
    timer.start()
    try:
        began = time.monotonic()
        assert wait_until_listening(WAIT, stop=stop) == []
        assert time.monotonic() - began < WAIT / 2
    finally:
        timer.join()


def test_success_is_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    with listening() as server:
        port = port_of(server)
        wait_until_listening(WAIT)
    assert any(
        record.name == "sdready"
        and record.levelno == logging.DEBUG
        and f"listening on 127.0.0.1:{port}" in record.getMessage()
        for record in caplog.records
    )


# --- the baseline snapshot rule -------------------------------------------------------


def test_an_auxiliary_listener_opened_during_startup_is_not_the_server() -> None:
    baseline = snapshot_listeners()  # the plugin, before the app's startup code
    assert len(baseline) == 0
    with listening() as metrics, bound() as server:  # the app's startup opens a metrics port
        with LateListen(server, delay=0.05) as late:  # the server listens after startup
            found = wait_until_listening(WAIT, baseline=baseline)
            assert late.about_to_listen.is_set()
        assert [item.port for item in found] == [port_of(server)]
        assert port_of(metrics) not in [item.port for item in found]


def test_an_auxiliary_listener_alone_times_out_and_is_named_as_such() -> None:
    baseline = snapshot_listeners()
    with listening() as metrics:
        port = port_of(metrics)
        with pytest.raises(ListenTimeoutError) as caught:
            wait_until_listening(0.05, baseline=baseline)
    message = str(caught.value)
    assert f"found: 127.0.0.1:{port} (opened during startup: auxiliary)" in message
    assert "not found: a listening socket not opened by the app's startup code" in message
    assert [item.port for item in caught.value.found] == [port]


def test_inherited_listeners_in_the_baseline_are_selected_at_once() -> None:
    with listening() as inherited:  # socket activation, --fd, a pre-fork master
        baseline = snapshot_listeners()
        with listening() as metrics:  # opened by the app's startup code
            found = wait_until_listening(WAIT, baseline=baseline)
            assert [item.fd for item in found] == [inherited.fileno()]
            assert metrics.fileno() not in [item.fd for item in found]


def test_without_a_baseline_listeners_present_when_waiting_begins_count() -> None:
    with listening() as first, listening() as second:
        found = wait_until_listening(WAIT)
        assert [item.fd for item in found] == [first.fileno(), second.fileno()]


def test_without_a_baseline_existing_listeners_do_not_wait_for_later_ones() -> None:
    with listening() as early, bound() as later:
        with LateListen(later, delay=0.5) as late:
            found = wait_until_listening(WAIT)
            assert not late.about_to_listen.is_set()  # sanity: returned long before
        assert [item.fd for item in found] == [early.fileno()]


def test_a_baseline_listener_closed_before_waiting_falls_back_to_a_new_one() -> None:
    inherited = listening()
    baseline = snapshot_listeners()
    inherited.close()
    # The server listens well after the wait's first poll (20 ms lost that race under load:
    # seen then, it counted as opened by the startup code, like the metrics port).
    with listening() as metrics, bound() as server, LateListen(server, delay=0.3):
        found = wait_until_listening(WAIT, baseline=baseline)
        assert [item.port for item in found] == [port_of(server)]
        assert metrics.fileno() not in [item.fd for item in found]


def test_snapshot_membership_is_by_socket_not_by_fd() -> None:
    with listening() as server:
        snapshot = snapshot_listeners()
        assert isinstance(snapshot, ListenerSnapshot)
        assert len(snapshot) == 1
        assert list(snapshot) == list(snapshot.listeners)
        assert snapshot.taken_at <= time.monotonic()
        duplicate = os.dup(server.fileno())
        try:
            original = snapshot.listeners[0]
            same_socket = Listener(
                duplicate,
                original.family,
                original.address,
                original.connect_address,
                original.port,
                original.inode,
            )
            assert same_socket in snapshot
        finally:
            os.close(duplicate)
        with listening():
            assert all(item in snapshot for item in listening_sockets()[:1])
            assert not all(item in snapshot for item in listening_sockets())
    assert "not a listener" not in snapshot


# --- expect ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_expect",
    [
        pytest.param(lambda port: port, id="int"),
        pytest.param(str, id="digits"),
        pytest.param(lambda port: f"127.0.0.1:{port}", id="host:port"),
        pytest.param(lambda port: f"*:{port}", id="*:port"),
        pytest.param(lambda port: f":{port}", id=":port"),
        pytest.param(lambda port: f"localhost:{port}", id="localhost:port"),
        pytest.param(lambda port: lambda item: item.port == port, id="predicate"),
        pytest.param(lambda port: [port], id="list"),
        pytest.param(lambda port: (f"127.0.0.1:{port}", port), id="tuple of two forms"),
    ],
)
def test_expect_forms_match_a_tcp_listener(make_expect: Callable[[int], object]) -> None:
    with listening() as other, listening() as server:
        found = wait_until_listening(WAIT, expect=make_expect(port_of(server)))  # type: ignore[arg-type]
        assert [item.fd for item in found] == [server.fileno()]
        assert other.fileno() not in [item.fd for item in found]


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="this host has no ::1")
def test_expect_ipv6_host_port() -> None:
    with bound("::1", socket.AF_INET6) as server:
        server.listen()
        port = port_of(server)
        assert wait_until_listening(WAIT, expect=f"[::1]:{port}")[0].fd == server.fileno()
        assert wait_until_listening(WAIT, expect=f"localhost:{port}")[0].fd == server.fileno()
        with pytest.raises(ListenTimeoutError):
            wait_until_listening(0.02, expect=f"127.0.0.1:{port}")


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="this host has no ::1")
def test_expect_matches_an_address_however_it_is_spelled() -> None:
    with bound("::ffff:127.0.0.1", socket.AF_INET6) as server:
        server.listen()
        port = port_of(server)
        assert wait_until_listening(0, expect=f"[::ffff:127.0.0.1]:{port}")[0].port == port
        assert wait_until_listening(0, expect=f"[::FFFF:7f00:1]:{port}")[0].port == port
        assert wait_until_listening(0, expect=f"[0:0:0:0:0:ffff:7f00:0001]:{port}")


def test_expect_unix_path_and_abstract_name(tmp_path: Path) -> None:
    path = str(tmp_path / "app.sock")
    name = f"@sdready-wait-{os.getpid()}"
    with socket.socket(socket.AF_UNIX) as by_path, socket.socket(socket.AF_UNIX) as abstract:
        by_path.bind(path)
        abstract.bind("\0" + name[1:])
        with LateListen(by_path, abstract, delay=0.02):
            found = wait_until_listening(WAIT, expect=[path, name])
        assert {item.address for item in found} == {path, name}


def test_expect_waits_until_every_entry_is_present() -> None:
    with listening() as first, bound() as second, LateListen(second, delay=0.05) as late:
        found = wait_until_listening(WAIT, expect=[port_of(first), port_of(second)])
        assert late.about_to_listen.is_set()
        assert [item.fd for item in found] == [first.fileno(), second.fileno()]


def test_expect_ignores_the_baseline_rule() -> None:
    baseline = snapshot_listeners()
    with listening() as metrics:  # would be auxiliary for the default selection
        found = wait_until_listening(WAIT, expect=port_of(metrics), baseline=baseline)
        assert found[0].fd == metrics.fileno()


def test_a_host_matches_the_bound_address_exactly() -> None:
    with listening("0.0.0.0") as server:
        port = port_of(server)
        assert wait_until_listening(WAIT, expect=f"0.0.0.0:{port}")[0].fd == server.fileno()
        with pytest.raises(ListenTimeoutError) as caught:
            wait_until_listening(0.02, expect=f"127.0.0.1:{port}")
    assert f"expected but not found: 127.0.0.1:{port}" in str(caught.value)
    assert f"found: 0.0.0.0:{port}" in str(caught.value)


def test_the_timeout_message_names_found_and_missing_entries() -> None:
    with listening() as server:
        port = port_of(server)
        with pytest.raises(ListenTimeoutError) as caught:
            wait_until_listening(0.05, expect=[port, 1, "/nowhere.sock"])
    error = caught.value
    assert error.missing == ("port 1", "/nowhere.sock")
    assert [item.port for item in error.found] == [port]
    assert str(error) == (
        "timed out after 0.05 s waiting for listening sockets: "
        f"expected but not found: port 1; /nowhere.sock; found: 127.0.0.1:{port}"
    )


@pytest.mark.parametrize(
    "expect",
    [
        "nothing",
        "host:port",
        "127.0.0.1:http",
        "example.com:80",
        "999.1.1.1:80",
        0,
        70000,
        True,
        [],
        ["/ok.sock", 3.5],
        3.5,
        "@",
    ],
)
def test_malformed_expect_is_refused_at_the_call(expect: object) -> None:
    with pytest.raises(ValueError):
        wait_until_listening(WAIT, expect=expect)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        validate_wait_options(expect=expect)  # type: ignore[arg-type]


@pytest.mark.parametrize("probe", ["tcp", "http", "http:", "http:health", "http:/a b", "http:/é"])
def test_malformed_probe_is_refused_at_the_call(probe: str) -> None:
    with pytest.raises(ValueError):
        wait_until_listening(WAIT, probe=probe)
    with pytest.raises(ValueError):
        validate_wait_options(probe=probe)


@pytest.mark.parametrize(
    "kwargs", [{"timeout": -1}, {"timeout": float("nan")}, {"probe_timeout": 0}]
)
def test_malformed_timeouts_are_refused(kwargs: dict[str, float]) -> None:
    arguments: dict[str, float] = {"timeout": WAIT, **kwargs}
    with pytest.raises(ValueError):
        wait_until_listening(**arguments)  # type: ignore[arg-type]


# --- asyncio --------------------------------------------------------------------------


def test_async_wait_does_not_block_the_loop() -> None:
    async def main() -> tuple[list[Listener], int, socket.socket]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.001)
                ticks += 1
                if ticks == 20:  # only a loop the wait leaves running gets here
                    server.listen()  # from the loop, like uvicorn

        server = bound()
        ticking = asyncio.create_task(ticker())
        try:
            found = await async_wait_until_listening(WAIT)
        finally:
            ticking.cancel()
            await asyncio.gather(ticking, return_exceptions=True)
        return found, ticks, server

    found, ticks, server = asyncio.run(main())
    with server:
        assert [item.port for item in found] == [port_of(server)]
    assert ticks >= 20  # a blocking wait would have timed out instead, unticked


def test_async_wait_sees_a_listener_from_another_thread() -> None:
    with bound() as server, LateListen(server, delay=0.03) as late:
        found = asyncio.run(async_wait_until_listening(WAIT, expect=port_of(server)))
        assert late.about_to_listen.is_set()
        assert found[0].fd == server.fileno()


def test_async_wait_applies_the_baseline_rule() -> None:
    async def main(baseline: ListenerSnapshot, server: socket.socket) -> list[Listener]:
        asyncio.get_running_loop().call_later(0.02, server.listen)
        return await async_wait_until_listening(WAIT, baseline=baseline)

    baseline = snapshot_listeners()
    with listening() as metrics, bound() as server:
        found = asyncio.run(main(baseline, server))
        assert [item.fd for item in found] == [server.fileno()]
        assert metrics.fileno() not in [item.fd for item in found]


def test_async_wait_times_out_with_the_same_error() -> None:
    with pytest.raises(ListenTimeoutError) as caught:
        asyncio.run(async_wait_until_listening(0.05, expect="/nowhere.sock"))
    assert "expected but not found: /nowhere.sock" in str(caught.value)


def test_async_wait_can_be_cancelled() -> None:
    async def main() -> bool:
        task = asyncio.create_task(async_wait_until_listening(WAIT))
        await asyncio.sleep(0.02)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(main())
