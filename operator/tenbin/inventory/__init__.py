"""Member-cluster GPU inventory: what each member has, from its Nodes and Pods (and telemetry)."""

from tenbin.inventory.model import ClusterInventory, ModelInventory, NodeGPUs, inventory_from_objects

__all__ = ["ClusterInventory", "ModelInventory", "NodeGPUs", "inventory_from_objects"]
