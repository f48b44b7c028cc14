#!/usr/bin/env python3
"""What a loopback socket's first touch of memory costs on this machine (BENCHMARKS.md,
"Socket memory in a burst").

200 loopback connections; into each, up to 1 MB is written without reading (the kernel
holds it in socket buffers, about 210 MB in all), then read out. Four rounds, with a pause
of 5 s after the second, and the writer's CPU time per 4 KiB written in each. Where the
machine hands freed memory back to its host (a virtio balloon with free page reporting), a
page the kernel took back and gives out again costs a fault on the host the first time it
is written, so the rounds after a pause cost more than the rounds right after another.

    python3 bench/first_touch.py
"""

import socket
import time

CONNECTIONS = 200
PER_CONNECTION = 1_000_000
CHUNK = b"x" * 65536


def connect_pairs():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    pairs = []
    for _ in range(CONNECTIONS):
        client = socket.socket()
        client.connect(listener.getsockname())
        server, _ = listener.accept()
        server.setblocking(False)
        client.setblocking(False)
        pairs.append((server, client))
    return pairs


def fill(pairs):
    """Writes up to PER_CONNECTION bytes into each server socket; returns the bytes written
    and the CPU seconds it took."""
    started = time.process_time()
    total = 0
    for server, _ in pairs:
        sent = 0
        while sent < PER_CONNECTION:
            try:
                sent += server.send(CHUNK)
            except BlockingIOError:
                break  # its buffers are full
        total += sent
    return total, time.process_time() - started


def drain(pairs):
    for _, client in pairs:
        while True:
            try:
                if not client.recv(1 << 20):
                    break
            except BlockingIOError:
                break


def main():
    pairs = connect_pairs()
    for round_ in range(4):
        total, cpu = fill(pairs)
        drain(pairs)
        per_page_us = cpu / total * 4096 * 1e6
        print(f"round {round_}: wrote {total / 1e6:.0f} MB, writer CPU {cpu * 1000:.0f} ms, "
              f"{per_page_us:.2f} µs per 4 KiB")
        if round_ == 1:
            time.sleep(5)


if __name__ == "__main__":
    main()
