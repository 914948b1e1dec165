"""Prefork workers sharing one vshmd (the gunicorn pattern).

The parent makes one client, then forks N workers; each worker uses the client it inherited
(a vshm client works in a forked child with no user code: it re-registers with the daemon by
itself). All workers' requests go through the daemon's few server connections, however many
workers there are.

    vshmd --config vshmd.toml &                       # serving your server
    python examples/prefork.py /run/vshm/vshmd.sock [workers] [requests]

Prints one line per worker and the server's connected_clients at the end.
"""

import os
import sys
import time

import vshm


def worker(client: vshm.Client, n: int, requests: int) -> int:
    key = f"prefork:{n}"
    client.delete(key)
    t0 = time.monotonic()
    for _ in range(requests):
        client.incr(key)
    value = int(client.get(key))
    took = time.monotonic() - t0
    line = f"worker {n} (pid {os.getpid()}): {requests} INCR in {took:.2f}s, value {value}\n"
    os.write(1, line.encode())  # one write: the workers share stdout
    return 0 if value == requests else 1


def main() -> int:
    socket = sys.argv[1] if len(sys.argv) > 1 else "/run/vshm/vshmd.sock"
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    requests = int(sys.argv[3]) if len(sys.argv) > 3 else 1000

    client = vshm.Client.from_daemon(socket)  # made once, before the fork
    client.ping()

    pids = []
    for n in range(workers):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = worker(client, n, requests)
            finally:
                os._exit(code)
        pids.append(pid)

    failed = 0
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        failed += not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0)
    clients = client.info("clients").get("connected_clients")
    print(f"{workers - failed}/{workers} workers ok; server connected_clients: {clients}")
    client.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
