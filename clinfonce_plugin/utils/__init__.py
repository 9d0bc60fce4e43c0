"""Small shared helpers with no host dependency."""
from clinfonce_plugin.utils.distributed import (
    all_gather_no_grad,
    all_ranks_agree,
    all_reduce_sum_no_grad,
    gather_with_grad,
    get_rank,
    get_world_size,
    is_dist,
)

__all__ = [
    "all_gather_no_grad",
    "all_ranks_agree",
    "all_reduce_sum_no_grad",
    "gather_with_grad",
    "get_rank",
    "get_world_size",
    "is_dist",
]
