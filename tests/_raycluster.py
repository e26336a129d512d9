"""A real Ray cluster on 127.0.0.1 for the tests: a head and more nodes, one CPU each.

Every address is loopback: the nodes are started with ``node_ip_address = 127.0.0.1``, and a
driver in this process keeps that address through ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
(read when ``ray`` is imported; see ``forexd/daemon/backend_ray.py``). A daemon started as a
subprocess sets that switch itself (its address is a loopback one).
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from forexd.daemon.backend_ray import LOOPBACK_ENV

NODE: dict[str, Any] = {
    "num_cpus": 1,
    "node_ip_address": "127.0.0.1",
    "object_store_memory": 80 * 1024 * 1024,  # Ray's minimum is 75 MiB; /dev/shm is small
}
REPO = str(Path(__file__).resolve().parents[1])


@contextmanager
def loopback_cluster(nodes: int = 2) -> Iterator[Any]:
    """A started ``ray.cluster_utils.Cluster`` of ``nodes`` nodes (head included); skip
    when Ray is not installed."""
    if "ray" in sys.modules:
        from ray._private import ray_constants

        if ray_constants.ENABLE_RAY_CLUSTER:
            pytest.fail("ray was imported before the loopback switch could be set")
    os.environ[LOOPBACK_ENV] = "0"  # a driver here keeps 127.0.0.1 (read when ray is imported)
    # Workers start in the nodes' environment: make forexd importable there as it is here.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'forexd[ray]')")
    from ray.cluster_utils import Cluster

    started = Cluster(initialize_head=True, head_node_args={**NODE, "include_dashboard": False})
    try:
        for _ in range(nodes - 1):
            started.add_node(**NODE)
        started.wait_for_nodes()
        yield started
    finally:
        started.shutdown()


def node_ids(cluster: Any) -> set[str]:
    """The ids (hex) of the cluster's live nodes, head included."""
    return {node.node_id for node in cluster.list_all_nodes()}


def running_tasks(cluster: Any) -> int:
    """Workers of the cluster's nodes executing a forexd job now (Ray titles them
    ``ray::run_capped`` while the task runs)."""
    import psutil

    count = 0
    for node in cluster.list_all_nodes():
        raylet = psutil.Process(node.all_processes["raylet"][0].process.pid)
        for child in raylet.children(recursive=True):
            try:
                count += "ray::run_capped" in " ".join(child.cmdline())
            except psutil.Error:  # a worker that exited meanwhile
                continue
    return count


def free_port() -> int:
    """A loopback port nothing listens on now (for an address that must be unreachable)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
