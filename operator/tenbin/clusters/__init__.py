"""Member-cluster access: the only place that talks to member apiservers."""

from tenbin.clusters.gateway import ClusterGateway, GatewayError, MemberObservation, ObservedObject
from tenbin.clusters.kube import KubeGateway

__all__ = ["ClusterGateway", "GatewayError", "KubeGateway", "MemberObservation", "ObservedObject"]
