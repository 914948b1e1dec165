"""pytest fixtures: real servers, vshmd, and vshm clients of every kind.

Servers: a standalone redis-server and a 6-node cluster, started once per session with
scripts/test-servers.sh (the same helper the C tests use) unless VSHM_TEST_STANDALONE and
VSHM_TEST_CLUSTER name running ones; stopped at the end of the session. vshmd: the binary of
$VSHMD_BIN, else target/<VSHM_TEST_PROFILE or debug>/vshmd (or under $CARGO_TARGET_DIR), one
daemon per topology, started on first use and tied to this process (it dies with it).

Clients: the ``client`` fixture is parametrized over in-process (``from_url``) and vshmd
(``from_daemon``); ``any_client`` adds the cluster. Tests use keys under their own hash-tagged
prefix (``keys`` fixture), so they can share the servers and run on the cluster alike.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Dict, List, Optional

import pytest

import vshm

ROOT = Path(__file__).resolve().parents[2]
SERVERS_SCRIPT = ROOT / "scripts" / "test-servers.sh"


def _bounded_wait(pred, timeout: float, what: str, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pdeathsig():
    # the child dies with the test process (no daemon or server outlives a killed pytest)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


# --- servers ----------------------------------------------------------------------------------

class Servers:
    def __init__(self) -> None:
        self.dir: Optional[str] = None
        env = os.environ
        if env.get("VSHM_TEST_STANDALONE") and env.get("VSHM_TEST_CLUSTER"):
            self.standalone = env["VSHM_TEST_STANDALONE"]
            self.cluster = env["VSHM_TEST_CLUSTER"].split(",")
            return
        self.dir = tempfile.mkdtemp(prefix="vshm-py-servers-")
        subprocess.run(["bash", str(SERVERS_SCRIPT), "start", self.dir], check=True, timeout=180)
        values: Dict[str, str] = {}
        for line in Path(self.dir, "env").read_text().splitlines():
            k, _, v = line.partition("=")
            values[k] = v
        self.standalone = values["VSHM_TEST_STANDALONE"]
        self.cluster = values["VSHM_TEST_CLUSTER"].split(",")

    def stop(self) -> None:
        if self.dir is not None:
            subprocess.run(["bash", str(SERVERS_SCRIPT), "stop", self.dir], timeout=60)
            self.dir = None


def vshmd_bin() -> str:
    if os.environ.get("VSHMD_BIN"):
        return os.environ["VSHMD_BIN"]
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    profiles = [os.environ.get("VSHM_TEST_PROFILE", "debug"), "debug", "release"]
    for p in profiles:
        b = target / p / "vshmd"
        if b.exists():
            return str(b)
    pytest.skip(f"no vshmd binary under {target} (build it: cargo build -p vshmd)")


class Vshmd:
    """A vshmd on a private socket, serving ``addresses`` (standalone or cluster)."""

    def __init__(self, addresses: List[str], cluster: bool, request_timeout_ms: int = 5000) -> None:
        self.dir = tempfile.mkdtemp(prefix="vshm-py-vshmd-")
        self.socket = os.path.join(self.dir, "vshmd.sock")
        self.config = os.path.join(self.dir, "vshmd.toml")
        self.log = os.path.join(self.dir, "vshmd.log")
        addrs = ", ".join(f'"{a}"' for a in addresses)
        mode = "cluster" if cluster else "standalone"
        Path(self.config).write_text(
            f'socket_path = "{self.socket}"\nshutdown_grace_ms = 1000\n'
            f'[server]\naddresses = [{addrs}]\nmode = "{mode}"\n'
            f"request_timeout_ms = {request_timeout_ms}\n"
        )
        self.proc: Optional[subprocess.Popen] = None
        self.start()

    def start(self) -> None:
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [vshmd_bin(), "--config", self.config],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=_pdeathsig,
            )

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"vshmd exited at startup:\n{Path(self.log).read_text()[-3000:]}")
            if not os.path.exists(self.socket):
                return False
            # bound is not enough: it must accept (listen) too
            with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
                try:
                    s.connect(self.socket)
                    return True
                except OSError:
                    return False

        _bounded_wait(up, 20, "vshmd's socket")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer:
    """A private redis-server (for tests that restart it) on a fixed loopback port."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="vshm-py-redis-")
        self.port = _free_port()
        self.proc: Optional[subprocess.Popen] = None
        self.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=_pdeathsig,
        )

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited at startup")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    return s.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        _bounded_wait(up, 20, f"redis-server on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def servers():
    s = Servers()
    try:
        yield s
    finally:
        s.stop()


_daemons: Dict[str, Vshmd] = {}


@pytest.fixture(scope="session")
def daemons(servers):
    """Lazily started vshmd per topology: daemons('standalone') / daemons('cluster')."""

    def get(topology: str) -> Vshmd:
        if topology not in _daemons:
            if topology == "standalone":
                _daemons[topology] = Vshmd([servers.standalone], cluster=False)
            else:
                _daemons[topology] = Vshmd(servers.cluster, cluster=True)
        return _daemons[topology]

    try:
        yield get
    finally:
        for d in _daemons.values():
            d.remove()
        _daemons.clear()


def url_for(servers: Servers, topology: str, query: str = "") -> str:
    if topology == "standalone":
        return f"valkey://{servers.standalone}" + (f"?{query}" if query else "")
    q = "cluster=1" + (f"&{query}" if query else "")
    return f"valkey://{servers.cluster[0]}?{q}"


@pytest.fixture
def make_client(servers, daemons):
    """make_client(mode, topology, **options) -> vshm.Client (closed at teardown)."""
    made = []

    def make(mode: str = "embedded", topology: str = "standalone", cls=vshm.Client, **options):
        if mode == "embedded":
            c = cls.from_url(url_for(servers, topology), **options)
        else:
            c = cls.from_daemon(daemons(topology).socket, **options)
        made.append(c)
        return c

    yield make
    for c in made:
        try:
            c.native.close()
        except Exception:
            pass


MODES = ["embedded", "daemon"]


@pytest.fixture(params=MODES)
def mode(request):
    return request.param


@pytest.fixture(params=[("embedded", "standalone"), ("daemon", "standalone"),
                        ("embedded", "cluster"), ("daemon", "cluster")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def any_client(request, make_client):
    mode, topology = request.param
    return make_client(mode, topology)


@pytest.fixture
def client(make_client, mode):
    return make_client(mode, "standalone")


@pytest.fixture
def keys():
    """A key prefix of this test, one slot (hash tag): keys('a') -> '{t1234}:a'."""
    tag = "{t" + uuid.uuid4().hex[:12] + "}:"
    return lambda name="k": tag + name


@pytest.fixture
def redis_py(servers):
    redis = pytest.importorskip("redis")
    host, port = servers.standalone.rsplit(":", 1)
    r = redis.Redis(host=host, port=int(port))
    yield r
    r.close()


@pytest.fixture
def private_redis():
    s = RedisServer()
    yield s
    s.remove()


@pytest.fixture
def new_vshmd(servers):
    """new_vshmd(addresses=None, cluster=False) -> a Vshmd of this test (stopped at teardown);
    by default serving the shared standalone server."""
    made = []

    def make(addresses=None, cluster=False, **kw):
        d = Vshmd(addresses or [servers.standalone], cluster=cluster, **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.remove()
