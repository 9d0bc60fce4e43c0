"""The plugin's methods, one file each; file name = registry key = yaml ``method:``."""
from .clinfonce import ClInfoNCE
from .cluster_ce import ClusterCE
from .cmc_attributes import CMCAttributes
from .pcl import PCL
from .wcl import WCL

PLUGIN_METHODS = {"clinfonce": ClInfoNCE, "cluster_ce": ClusterCE, "cmc_attributes": CMCAttributes,
                  "pcl": PCL, "wcl": WCL}

__all__ = ["PLUGIN_METHODS", "ClInfoNCE", "ClusterCE", "CMCAttributes", "PCL", "WCL"]
