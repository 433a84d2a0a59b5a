"""GPUCluster: a member cluster that can run GPU work (cluster-scoped, short name `gpuc`)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, StringConstraints, model_validator

from tenbin.api.common import (
    MAX_GPUS,
    MAX_LABELS,
    MAX_MODELS,
    SET,
    ApiModel,
    Conditions,
    Currency,
    Jurisdiction,
    Message,
    Name,
    NoDuplicates,
    ObjectMeta,
    Price,
    StrictBool,
    StrictInt,
    Text,
    Tier,
    Timestamp,
    Token,
    cel,
    list_map,
    unique_by,
)
from tenbin.api.telemetry import TelemetrySpec

GpuCount = Annotated[StrictInt, Field(ge=0, le=MAX_GPUS)]


class ClusterPhase(StrEnum):
    READY = "Ready"
    NOT_READY = "NotReady"
    UNKNOWN = "Unknown"


class ClusterCondition(StrEnum):
    """The types of a GPUCluster's status.conditions."""

    READY = "Ready"
    """True while the member's apiserver answers; False when unreachable or the spec is invalid."""
    TELEMETRY_AVAILABLE = "TelemetryAvailable"
    """Whether the configured Prometheus/DCGM telemetry was read (absent when none is configured)."""


class ClusterReason(StrEnum):
    """The reasons of a GPUCluster's conditions (those Tenbin's services set) and of the Events posted on it."""

    NOT_YET_OBSERVED = "NotYetObserved"
    """Ready: the member has not been observed yet (the state before the first round)."""
    OBSERVED = "Observed"
    """Ready=True: the member's apiserver answered this round."""
    UNREACHABLE = "Unreachable"
    """Ready=False: no successful observation for --unreachable-after seconds (or ever)."""
    INVALID_SPEC = "InvalidSpec"
    """Ready=False: the GPUCluster's spec fails validation."""
    NO_CREDENTIALS = "NoCredentials"
    """TelemetryAvailable=False: the Secret holding the telemetry credentials could not be read."""
    FENCE_CONSUMED = "FenceConsumed"
    """Event: the member answers again, so its tenbin.io/fenced annotation was removed."""
    LEFT_IN_MEMBER = "LeftInMember"
    """Event: a deleted member did not answer in time; Tenbin's objects named in the message stay there."""
    ATTESTATION_LAPSING = "AttestationLapsing"
    """Event: an attestation of the PlacementPolicy covering the cluster lapses within attestationWarningDays."""
    ATTESTATION_LAPSED = "AttestationLapsed"
    """Event: it lapsed; the cluster no longer holds the label (work that needs it moves: ResidencyDrift)."""
    DELETION_AWAITS_FENCE = "DeletionAwaitsFence"
    """Event: a deleted member does not answer and holds run-once copies of work that is not finished: it is
    let go only once annotated tenbin.io/fenced (else the work could run twice, there and elsewhere)."""


class GPUOffering(ApiModel):
    """One GPU model the cluster offers, with its static capacity and its price."""

    model: Token
    """Canonical model name, compared exactly (e.g. H100-80GB)."""
    count: GpuCount
    """Installed GPUs of this model (static capacity; live inventory in status.gpus wins)."""
    memory_gib: Annotated[StrictInt, Field(ge=1, le=4096, alias="memoryGiB")]
    """Memory of one GPU in GiB."""
    price_per_gpu_hour: Annotated[Price, Field(alias="pricePerGPUHour")]
    """Price of one GPU for one hour, in `currency`."""
    currency: Currency
    """ISO 4217 code of the price."""


class SecretKeyRef(ApiModel):
    """A key of a Secret on the hub."""

    namespace: Name
    """The Secret's namespace on the hub; the operator must be allowed to read it there (the hub chart allows its own
    namespace)."""
    name: Annotated[str, StringConstraints(min_length=1, max_length=253)]
    """The Secret's name."""
    key: Annotated[str, StringConstraints(min_length=1, max_length=253)] = "kubeconfig"
    """The key within the Secret's data (default kubeconfig)."""


class KarmadaConnection(ApiModel):
    """The member is reached through a Karmada control plane: Tenbin pins work to it, Karmada propagates it."""

    kubeconfig_secret_ref: SecretKeyRef
    """A Secret on the hub holding a kubeconfig for the Karmada apiserver."""
    cluster_name: Name
    """The member's name among Karmada's Clusters (cluster.karmada.io)."""


_CONNECTION_RULE = cel(
    "(has(self.kubeconfigSecretRef) ? 1 : 0) + ((has(self.inCluster) && self.inCluster) ? 1 : 0)"
    " + (has(self.karmada) ? 1 : 0) == 1",
    "set exactly one of kubeconfigSecretRef, inCluster: true or karmada",
)


class ClusterConnection(ApiModel):
    """How the operator reaches the member cluster: exactly one of the fields."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [_CONNECTION_RULE]})

    kubeconfig_secret_ref: SecretKeyRef | None = None
    """A Secret on the hub holding a kubeconfig for the member."""
    in_cluster: StrictBool | None = None
    """The member is the hub itself (use the operator's own credentials)."""
    karmada: KarmadaConnection | None = None
    """The member is a Karmada member cluster: placements go through that Karmada (docs/karmada.md)."""

    @model_validator(mode="after")
    def _exactly_one(self) -> ClusterConnection:
        if (self.kubeconfig_secret_ref is not None) + bool(self.in_cluster) + (self.karmada is not None) != 1:
            raise ValueError(_CONNECTION_RULE["message"])
        return self


class GPUClusterSpec(ApiModel):
    """What a member cluster is, where it is, what it offers and at what price."""

    tier: Tier
    """OnPrem | SovereignCloud | Hyperscaler."""
    provider: Text | None = None
    """Free text: onprem, sakura, kddi, highreso, aws, gcp, azure, ..."""
    region: Text | None = None
    """The provider's region, free text (jp-ishikari, ap-northeast-1); shown, never compared."""
    jurisdiction: Jurisdiction
    """Legal jurisdiction of the data centre, ISO 3166-1 alpha-2 upper case (JP, US, ...)."""
    operator_jurisdiction: Jurisdiction | None = None
    """Where the company that operates the service — and so can be compelled to give access to the data — is
    incorporated, apart from where the data sits (APPI looks at both). A Japanese provider's GPUs resold
    through a US hyperscaler keep jurisdiction JP and operatorJurisdiction JP when the Japanese company runs
    them; a US company's Tokyo region is jurisdiction JP, operatorJurisdiction US. Unset: not known, so a rule
    or a workload that names operator jurisdictions rules the cluster out."""
    residency_labels: Annotated[
        list[Token],
        Field(default_factory=list, max_length=MAX_LABELS, json_schema_extra=SET),
        NoDuplicates,
    ]
    """Attestations the cluster holds (e.g. ismap, jp-domestic-operator, on-premises)."""
    gpus: Annotated[
        list[GPUOffering],
        Field(min_length=1, max_length=MAX_MODELS, json_schema_extra=list_map("model")),
        AfterValidator(lambda v: unique_by(v, "model")),
    ]
    """GPU models on offer, one entry per model."""
    cordoned: StrictBool = False
    """True: keep running work, accept no new placements."""
    connection: ClusterConnection | None = None
    """How the operator reaches the cluster; without it the cluster can only be simulated."""
    telemetry: TelemetrySpec | None = None
    """Live GPU telemetry (Prometheus / DCGM exporter); without it the API inventory is used."""


class GPUInventory(ApiModel):
    """Live inventory of one GPU model, as observed on the member cluster."""

    model: Token
    """The GPU model (canonical name, as in spec.gpus[].model)."""
    capacity: GpuCount
    """GPUs of this model installed on the member's Nodes."""
    allocatable: GpuCount
    """Of those, what pods can be given: on Ready, schedulable Nodes, less the GPUs reported unhealthy."""
    allocated: GpuCount
    """GPUs held by pods that are not finished."""
    free: GpuCount
    """What a new placement can take: allocatable GPUs not held by pods, on Nodes whose taints a Tenbin pod
    tolerates."""


class GPUClusterStatus(ApiModel):
    """Observed state, written by the operator."""

    phase: ClusterPhase | None = None
    """Ready (reached, inventory read), NotReady (unreachable or an invalid spec; the message says which) or Unknown
    (not observed yet)."""
    gpus: Annotated[
        list[GPUInventory] | None,
        Field(default=None, max_length=MAX_MODELS, json_schema_extra=list_map("model")),
    ]
    """Live inventory; when present, `free` here wins over spec.gpus[].count."""
    free_gpus: Annotated[StrictInt, Field(ge=0)] | None = Field(default=None, alias="freeGPUs")
    """Sum of gpus[].free (for `kubectl get gpuc`)."""
    last_sync_time: Timestamp | None = None
    """When the member was last observed (refreshed at least every --status-heartbeat)."""
    message: Message | None = None
    """The state in words: free GPUs, or why NotReady and since when."""
    observed_generation: Annotated[StrictInt, Field(ge=0)] | None = None
    """The metadata.generation the status was written for."""
    conditions: Conditions
    """Ready (reached and valid, or why not), TelemetryAvailable (the Prometheus telemetry, when configured)."""


class GPUCluster(ApiModel):
    """A member cluster that can run GPU work: where it is, what it offers, at what price."""

    model_config = ConfigDict(title="GPUCluster")

    api_version: Literal["tenbin.io/v1alpha1"] = Field(default="tenbin.io/v1alpha1", alias="apiVersion")
    kind: Literal["GPUCluster"] = "GPUCluster"
    metadata: ObjectMeta
    spec: GPUClusterSpec
    status: GPUClusterStatus | None = None

    @property
    def name(self) -> str:
        return self.metadata.name


__all__ = [
    "ClusterCondition",
    "ClusterConnection",
    "ClusterPhase",
    "ClusterReason",
    "GPUCluster",
    "GPUClusterSpec",
    "GPUClusterStatus",
    "GPUInventory",
    "GPUOffering",
    "KarmadaConnection",
    "SecretKeyRef",
]
