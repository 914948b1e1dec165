"""Python client benchmark: vshm (in process and through vshmd) against redis-py (pure-Python
parser and hiredis) and valkey-glide, on one standalone server.

Scenarios (each client that has the mode; a client whose package is missing is reported as
skipped):
  seq       one process, one thread: SET then GET of the same key, ops/s
  async     one process, asyncio, 50 tasks sharing one client: SET/GET, ops/s
  prefork   P processes (8 and 32) forked from a parent, each doing blocking SET/GET on a
            client (vshm: made in the parent before the fork, as a prefork server would;
            others: made in the child): aggregate ops/s, and the server's connected_clients
            while they run (peak; and the count before the processes were made, which holds
            a vshmd's own connections and those of earlier scenarios still closing); the
            benchmark's own monitoring connection is not counted

    python bench.py --redis 127.0.0.1:6379 --vshmd /tmp/vshmd.sock --json out.json --md out.md
    python bench.py ... --quick          # small counts, to check that it runs

bench/python/run.sh sets everything up (venv, packages, servers) and runs this.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

VALUE = b"v" * 64


# --- clients -----------------------------------------------------------------------------------
# Each factory returns (sync_client_maker, async_client_maker); a maker is None when the client
# has no such mode, and raises ImportError when its package is missing.

def vshm_sync(url: Optional[str], sock: Optional[str]) -> Callable[[], Any]:
    import vshm

    if sock:
        return lambda: vshm.Client.from_daemon(sock)
    return lambda: vshm.Client.from_url(url)


def vshm_async(url: Optional[str], sock: Optional[str]) -> Callable[[], Any]:
    import vshm.asyncio

    if sock:
        return lambda: vshm.asyncio.Client.from_daemon(sock)
    return lambda: vshm.asyncio.Client.from_url(url)


def redispy_sync(host: str, port: int, hiredis: bool) -> Callable[[], Any]:
    import redis

    parser = _redis_parser(hiredis)
    return lambda: redis.Redis(connection_pool=redis.ConnectionPool(host=host, port=port, parser_class=parser))


def redispy_async(host: str, port: int, hiredis: bool) -> Callable[[], Any]:
    import redis.asyncio

    parser = _redis_parser(hiredis, asyncio_=True)

    def make():
        pool = redis.asyncio.ConnectionPool(host=host, port=port, parser_class=parser, max_connections=64)
        return redis.asyncio.Redis(connection_pool=pool)

    return make


def _redis_parser(hiredis: bool, asyncio_: bool = False) -> Any:
    from redis import _parsers

    if hiredis:
        import hiredis as _  # noqa: F401  (ImportError: skipped)

        return _parsers._AsyncHiredisParser if asyncio_ else _parsers._HiredisParser
    return _parsers._AsyncRESP2Parser if asyncio_ else _parsers._RESP2Parser


def glide_sync(host: str, port: int) -> Callable[[], Any]:
    from glide_sync import GlideClient, GlideClientConfiguration, NodeAddress

    return lambda: GlideClient.create(GlideClientConfiguration([NodeAddress(host, port)]))


def glide_async(host: str, port: int) -> Callable[[], Any]:
    from glide import GlideClient, GlideClientConfiguration, NodeAddress

    async def make():
        return await GlideClient.create(GlideClientConfiguration([NodeAddress(host, port)]))

    return make


def clients(args: argparse.Namespace) -> Dict[str, Tuple[Any, Any]]:
    host, port_s = args.redis.rsplit(":", 1)
    port = int(port_s)
    url = f"valkey://{args.redis}"
    out: Dict[str, Tuple[Any, Any]] = {}

    def add(name: str, sync: Callable[[], Any], asy: Callable[[], Any]) -> None:
        out[name] = (sync, asy)

    add("vshm in-process", lambda: vshm_sync(url, None), lambda: vshm_async(url, None))
    if args.vshmd:
        add("vshm vshmd", lambda: vshm_sync(None, args.vshmd), lambda: vshm_async(None, args.vshmd))
    add("redis-py", lambda: redispy_sync(host, port, False), lambda: redispy_async(host, port, False))
    add("redis-py+hiredis", lambda: redispy_sync(host, port, True), lambda: redispy_async(host, port, True))
    add("valkey-glide", lambda: glide_sync(host, port), lambda: glide_async(host, port))
    return out


# --- scenarios ---------------------------------------------------------------------------------

def seq(make: Callable[[], Any], ops: int, key: str) -> Dict[str, Any]:
    c = make()
    c.set(key, VALUE)
    n = ops // 2
    t0 = time.perf_counter()
    for _ in range(n):
        c.set(key, VALUE)
        c.get(key)
    secs = time.perf_counter() - t0
    _close(c)
    return {"ops": 2 * n, "secs": secs, "ops_per_sec": 2 * n / secs}


def run_async(make: Callable[[], Any], ops: int, tasks: int, key: str) -> Dict[str, Any]:
    async def main() -> Dict[str, Any]:
        c = make()
        if asyncio.iscoroutine(c):
            c = await c
        per = max(1, ops // (2 * tasks))

        async def task(i: int) -> None:
            k = f"{key}:{i}"
            for _ in range(per):
                await c.set(k, VALUE)
                await c.get(k)

        await task(-1)  # warm up (connections made)
        t0 = time.perf_counter()
        await asyncio.gather(*(task(i) for i in range(tasks)))
        secs = time.perf_counter() - t0
        await _aclose(c)
        return {"ops": 2 * per * tasks, "secs": secs, "ops_per_sec": 2 * per * tasks / secs, "tasks": tasks}

    return asyncio.run(main())


def prefork(make: Callable[[], Any], procs: int, ops: int, key: str, make_in_parent: bool,
            monitor: "Monitor") -> Dict[str, Any]:
    before = monitor.baseline()
    parent_client = make() if make_in_parent else None
    if parent_client is not None:
        parent_client.ping()
    go_r, go_w = os.pipe()
    res_r, res_w = os.pipe()
    ready_r, ready_w = os.pipe()
    pids = []
    per = max(1, ops // 2)
    for i in range(procs):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(go_w)
                c = parent_client if parent_client is not None else make()
                k = f"{key}:{i}"
                c.set(k, VALUE)
                os.write(ready_w, b"r")
                os.read(go_r, 1)  # the start signal (the parent closes go_w)
                t0 = time.monotonic()
                for _ in range(per):
                    c.set(k, VALUE)
                    c.get(k)
                t1 = time.monotonic()
                os.write(res_w, f"{t0} {t1} {2 * per}\n".encode())
                code = 0
            except BaseException as e:  # noqa: BLE001
                os.write(res_w, f"error {type(e).__name__}: {e}\n".replace("\n", " ").encode() + b"\n")
            finally:
                os._exit(code)
        pids.append(pid)
    os.close(ready_w)
    got = 0
    deadline = time.monotonic() + 120
    while got < procs and time.monotonic() < deadline:
        b = os.read(ready_r, procs)
        if not b:
            break
        got += len(b)
    monitor.start()
    os.close(go_w)  # every child's read returns: go
    results: List[str] = []
    buf = b""
    os.close(res_w)
    while True:
        b = os.read(res_r, 65536)
        if not b:
            break
        buf += b
    for pid in pids:
        os.waitpid(pid, 0)
    peak = monitor.stop()
    for f in (go_r, res_r, ready_r):
        os.close(f)
    results = [line for line in buf.decode().splitlines() if line]
    errors = [r for r in results if r.startswith("error")]
    spans = [tuple(float(x) for x in r.split()) for r in results if not r.startswith("error")]
    if parent_client is not None:
        _close(parent_client)
    if not spans:
        return {"error": errors[0] if errors else "no results"}
    start = min(s[0] for s in spans)
    end = max(s[1] for s in spans)
    total = sum(s[2] for s in spans)
    return {
        "procs": procs, "ops": int(total), "secs": end - start, "ops_per_sec": total / (end - start),
        "server_connections_peak": peak, "server_connections_before": before, "errors": errors[:3],
    }


class Monitor:
    """Samples the server's connected_clients (minus this connection) while a scenario runs."""

    def __init__(self, addr: str) -> None:
        host, port = addr.rsplit(":", 1)
        self.addr = (host, int(port))
        self.peak = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _clients(self, s: socket.socket) -> int:
        s.sendall(b"INFO clients\r\n")
        data = b""
        while b"connected_clients:" not in data or not data.endswith(b"\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        for line in data.decode(errors="replace").splitlines():
            if line.startswith("connected_clients:"):
                return int(line.split(":")[1]) - 1
        return -1

    def baseline(self) -> int:
        with socket.create_connection(self.addr, timeout=5) as s:
            return self._clients(s)

    def start(self) -> None:
        self.peak = 0
        self._stop.clear()

        def run() -> None:
            with socket.create_connection(self.addr, timeout=5) as s:
                while not self._stop.is_set():
                    self.peak = max(self.peak, self._clients(s))
                    self._stop.wait(0.05)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> int:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        return self.peak


def _close(c: Any) -> None:
    try:
        c.close()
        pool = getattr(c, "connection_pool", None)  # redis-py: a pool we made is ours to close
        if pool is not None:
            pool.disconnect()
    except Exception:
        pass


async def _aclose(c: Any) -> None:
    for name in ("aclose", "close"):
        f = getattr(c, name, None)
        if f is not None:
            try:
                r = f()
                if asyncio.iscoroutine(r):
                    await r
                pool = getattr(c, "connection_pool", None)
                if pool is not None:
                    await pool.disconnect()
            except Exception:
                pass
            return


# --- main --------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--redis", required=True, help="HOST:PORT of the standalone server")
    ap.add_argument("--vshmd", help="vshmd socket serving that server")
    ap.add_argument("--seq-ops", type=int, default=100_000)
    ap.add_argument("--async-ops", type=int, default=100_000)
    ap.add_argument("--async-tasks", type=int, default=50)
    ap.add_argument("--prefork-ops", type=int, default=20_000, help="per process")
    ap.add_argument("--procs", default="8,32")
    ap.add_argument("--only", help="comma-separated client names")
    ap.add_argument("--quick", action="store_true", help="small counts (checks that it runs)")
    ap.add_argument("--json", help="write the results as JSON")
    ap.add_argument("--md", help="write a markdown table")
    args = ap.parse_args()
    if args.quick:
        args.seq_ops, args.async_ops, args.prefork_ops = 2_000, 2_000, 200
    procs = [int(p) for p in args.procs.split(",") if p]

    monitor = Monitor(args.redis)
    results: Dict[str, Any] = {
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count()},
        "params": {k: v for k, v in vars(args).items() if k not in ("json", "md")},
        "clients": {},
    }
    results["server_connections_baseline"] = monitor.baseline()
    only = set(args.only.split(",")) if args.only else None
    for name, (sync_f, async_f) in clients(args).items():
        if only and name not in only:
            continue
        r: Dict[str, Any] = {}
        results["clients"][name] = r
        key = "pybench:" + name.replace(" ", "-")
        try:
            make = sync_f()
        except ImportError as e:
            r["skipped"] = f"not installed: {e}"
            print(f"{name}: skipped ({e})", flush=True)
            continue
        r["seq"] = _guard(lambda: seq(make, args.seq_ops, key))
        print(f"{name}: seq {_fmt(r['seq'])}", flush=True)
        try:
            amake = async_f()
            r["async"] = _guard(lambda: run_async(amake, args.async_ops, args.async_tasks, key))
        except ImportError as e:
            r["async"] = {"error": f"not installed: {e}"}
        print(f"{name}: async {_fmt(r['async'])}", flush=True)
        for p in procs:
            in_parent = name.startswith("vshm")
            r[f"prefork{p}"] = _guard(lambda: prefork(make, p, args.prefork_ops, key, in_parent, monitor))
            print(f"{name}: prefork {p} {_fmt(r[f'prefork{p}'])}", flush=True)

    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    table = markdown(results, procs)
    if args.md:
        with open(args.md, "w") as f:
            f.write(table)
    print()
    print(table)
    return 0


def _guard(f: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
    try:
        return f()
    except Exception as e:  # one client failing does not stop the others
        return {"error": f"{type(e).__name__}: {e}"}


def _fmt(r: Dict[str, Any]) -> str:
    if "error" in r:
        return f"error: {r['error']}"
    s = f"{r['ops_per_sec']:,.0f} ops/s"
    if "server_connections_peak" in r:
        s += f", server connections {r['server_connections_peak']}"
    return s


def markdown(results: Dict[str, Any], procs: List[int]) -> str:
    head = ["client", "seq ops/s", f"async ({results['params']['async_tasks']} tasks) ops/s"]
    for p in procs:
        head += [f"prefork {p} ops/s", f"prefork {p} conns"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name, r in results["clients"].items():
        if "skipped" in r:
            lines.append(f"| {name} | skipped: {r['skipped']} |" + " |" * (len(head) - 2))
            continue
        row = [name, _cell(r.get("seq")), _cell(r.get("async"))]
        for p in procs:
            pr = r.get(f"prefork{p}") or {}
            conns = "-"
            if "server_connections_peak" in pr:
                conns = f"{pr['server_connections_peak']} ({pr['server_connections_before']} before)"
            row += [_cell(pr), conns]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append(f"Server connections before any client ran (a vshmd's own): {results['server_connections_baseline']}. "
                 f"Python {results['machine']['python']}, {results['machine']['cpus']} CPUs.")
    return "\n".join(lines) + "\n"


def _cell(r: Optional[Dict[str, Any]]) -> str:
    if not r:
        return "-"
    if "error" in r:
        return "error"
    return f"{r['ops_per_sec']:,.0f}"


if __name__ == "__main__":
    sys.exit(main())
