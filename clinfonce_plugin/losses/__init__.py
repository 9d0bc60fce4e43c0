"""Contrastive losses: plain torch functions, no host import."""
from clinfonce_plugin.losses.cl_infonce import FORMS, cl_infonce
from clinfonce_plugin.losses.cmc import cross_view_infonce
from clinfonce_plugin.losses.wcl import instance_nce, multicrop_nce, multicrop_swap, wcl_swap

__all__ = ["FORMS", "cl_infonce", "cross_view_infonce", "instance_nce", "multicrop_nce",
           "multicrop_swap", "wcl_swap"]
