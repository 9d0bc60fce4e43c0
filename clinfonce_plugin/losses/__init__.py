"""Contrastive losses: plain torch functions, no host import."""
from clinfonce_plugin.losses.cl_infonce import FORMS, cl_infonce
from clinfonce_plugin.losses.cmc import cross_view_infonce
from clinfonce_plugin.losses.proto_nce import proto_nce, prototype_columns
from clinfonce_plugin.losses.wcl import instance_nce, multicrop_nce, multicrop_swap, wcl_swap

__all__ = ["FORMS", "cl_infonce", "cross_view_infonce", "instance_nce", "multicrop_nce",
           "multicrop_swap", "proto_nce", "prototype_columns", "wcl_swap"]
