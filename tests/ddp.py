"""The one launcher of the multi-process tests: CPU processes joined in a gloo group.

    from tests.ddp import run_ranks
    results = run_ranks(_worker, arg1, arg2)   # _worker(rank, arg1, arg2) -> picklable

``_worker`` must be a module-level function (the spawned processes import it by name).
"""
import datetime
import os
import socket
import tempfile
from typing import Any, Callable, List

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

# a failing rank makes the others raise after this long instead of hanging the test run
TIMEOUT = datetime.timedelta(seconds=300)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, fn: Callable[..., Any], world_size: int, port: int, out_dir: str,
               args: tuple) -> None:
    torch.set_num_threads(1)  # the ranks share the machine's cores
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world_size, timeout=TIMEOUT)
    try:
        result = fn(rank, *args)
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def run_ranks(fn: Callable[..., Any], *args: Any, world_size: int = 2) -> List[Any]:
    """Runs ``fn(rank, *args)`` in ``world_size`` spawned processes joined in a gloo group.

    Returns:
        what ``fn`` returned on each rank, in rank order (passed back with torch.save, so
        tensors, numpy arrays and plain containers of them). An exception in any rank fails
        the call.
    """
    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(_rank_main, args=(fn, world_size, free_port(), out_dir, args),
                 nprocs=world_size, join=True)
        return [torch.load(os.path.join(out_dir, f"rank{rank}.pt"), weights_only=True)
                for rank in range(world_size)]
