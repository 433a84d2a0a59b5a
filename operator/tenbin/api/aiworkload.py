"""AIWorkload: a GPU workload to place on exactly one member cluster (namespaced, short name `aiw`)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from tenbin.api.common import (
    MAX_GPUS_PER_REPLICA,
    MAX_HISTORY,
    MAX_JURISDICTIONS,
    MAX_LABELS,
    MAX_MODELS,
    MAX_REPLICAS,
    SET,
    ApiModel,
    Conditions,
    Currency,
    DataClassification,
    Jurisdiction,
    LabelSelector,
    Message,
    NoDuplicates,
    ObjectMeta,
    Price,
    StrictInt,
    Text,
    Tier,
    Timestamp,
    Token,
    Weights,
)


class MigrationPolicy(StrEnum):
    NEVER = "Never"
    """Stay where placed."""
    ON_FAILURE = "OnFailure"
    """Move when the cluster fails or the workload cannot run there."""
    COST_AWARE = "CostAware"
    """Also move when another feasible cluster is cheaper by at least minSavingsPercent."""


class WorkloadPhase(StrEnum):
    PENDING = "Pending"
    SCHEDULED = "Scheduled"
    RUNNING = "Running"
    MIGRATING = "Migrating"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    UNSCHEDULABLE = "Unschedulable"


class MigrationPhase(StrEnum):
    """Migration as data (like Karmada's GracefulEvictionTask): start the target, then stop the source."""

    PENDING = "Pending"
    """Decided, nothing applied yet."""
    CHECKPOINTING = "Checkpointing"
    """Batch work: the source was asked to checkpoint (annotation tenbin.io/checkpoint-requested); waiting
    for tenbin.io/checkpoint-done or the grace period."""
    STARTING_TARGET = "StartingTarget"
    """The template is applied on the target cluster; waiting for it to run."""
    STOPPING_SOURCE = "StoppingSource"
    """The target runs; removing the workload from the source cluster."""
    COMPLETED = "Completed"
    FAILED = "Failed"
    """The deadline passed or the target failed; the source keeps running."""


class WorkloadCondition(StrEnum):
    """The types of an AIWorkload's status.conditions."""

    SCHEDULED = "Scheduled"
    """True once placed on a cluster; False (with why) while unschedulable, refused or stopped after a loss."""
    READY = "Ready"
    """True while it runs in the member; False while the member leaves its pods unschedulable or a lost
    member's run-once copy awaits a fence."""
    VALID = "Valid"
    """False when the spec fails validation, or a member refused the template (it waits for a new spec)."""
    APPLIED = "Applied"
    """Whether the member took the latest generation of the template (False: it refused the change)."""
    PLACEMENT_CONFLICT = "PlacementConflict"
    """After a spec change: True when the current placement no longer satisfies it, False when it still fits."""
    DEPENDENCIES_SYNCED = "DependenciesSynced"
    """Whether what the pod templates reference (ConfigMaps, Secrets, ServiceAccounts, PriorityClasses) is in
    the member: True when copied (or the member's own), False naming what is missing, Unknown when the member's
    gateway does not copy them (Karmada)."""


class Reason(StrEnum):
    """The reasons of an AIWorkload's conditions, of the Kubernetes Events posted on it, and the events of
    its status.history (`HistoryEntry.event`)."""

    PLACED = "Placed"
    """Scheduled=True: a cluster was chosen."""
    SCHEDULED = "Scheduled"
    """Event and history event of a new placement; Event when the member shows it scheduled, pods not running."""
    UNSCHEDULABLE = "Unschedulable"
    """Scheduled=False and Event: no cluster satisfies the rules and has room; it waits for room (or a member
    that is ready, or one that serves its kind)."""
    NO_CLUSTER_CAN_FIT = "NoClusterCanFit"
    """Scheduled=False and Event: every cluster is ruled out by residency, its cluster selector or its GPU
    model/memory; no freed capacity will help, only an edit of the AIWorkload or of the fleet."""
    KIND_NOT_SERVED = "KindNotServed"
    """Scheduled=False and Event: the member does not serve the template's kind (the others are tried)."""
    POD_LABELS_PRUNED = "PodLabelsPruned"
    """Event: the member kept the object but dropped Tenbin's label from a pod template (its CRD's schema prunes
    the template's metadata): its pods cannot be attributed to the workload."""
    MEMBER_REJECTED = "MemberRejected"
    """Scheduled/Valid/Applied=False and Event: the member refused the template (invalid, forbidden)."""
    INVALID_SPEC = "InvalidSpec"
    """Valid=False and Event: the spec fails validation."""
    SPEC_CHANGED = "SpecChanged"
    """PlacementConflict=True: after a spec change the current placement breaks the rules."""
    INSUFFICIENT_CAPACITY = "InsufficientCapacity"
    """PlacementConflict=True: a resized request's pods do not all fit on the current cluster's nodes."""
    DEPENDENCIES_SYNCED = "Synced"
    """DependenciesSynced=True: everything the pod templates reference is in the member."""
    DEPENDENCY_MISSING = "DependencyMissing"
    """DependenciesSynced=False and Event: something they reference is not in the hub, not copied (a Secret,
    opt-in) and not in the member, or refused by the member; the pods wait for it there."""
    DEPENDENCIES_NOT_COPIED = "NotCopied"
    """DependenciesSynced=Unknown: this member's gateway (Karmada) does not copy dependencies."""
    FITS = "Fits"
    """PlacementConflict=False: the current placement still satisfies the changed spec."""
    PLACEMENT_CONFLICT = "PlacementConflict"
    """Event: the current placement no longer fits a changed spec (or a resize)."""
    APPLIED = "Applied"
    """Applied=True: the member took the latest generation."""
    COPY_MISSING = "CopyMissing"
    """Event: the copy in the member is gone; it is applied again."""
    MEMBER_UNREACHABLE = "MemberUnreachable"
    """Event: deletion could not remove the copy from an unreachable member and released the AIWorkload."""
    PODS_UNSCHEDULABLE = "PodsUnschedulable"
    """Ready=False and Event: the member leaves pods of the workload unschedulable."""
    RUNNING = "Running"
    """Ready=True, Event and history event: the member shows it running."""
    SUCCEEDED = "Succeeded"
    """Event and history event: the member shows it finished successfully."""
    FAILED = "Failed"
    """Event and history event: the member shows it failed."""
    AWAITING_FENCE = "AwaitingFence"
    """Ready=False and Event: its member is lost and a run-once copy may still run there (waits for a fence)."""
    REPLACE_REQUEST = "ReplaceRequest"
    """Event: a tenbin.io/replace request was consumed without a move (no other feasible cluster)."""
    MIGRATING = "Migrating"
    """Event: a move started."""
    MIGRATED = "Migrated"
    """Event and history event: a move completed."""
    MIGRATION_FAILED = "MigrationFailed"
    """Event and history event: a move failed; the workload stays on its source."""
    NO_MIGRATION_TARGET = "NoMigrationTarget"
    """Event: a move is due but no other cluster is feasible; it stays."""
    EVACUATED = "Evacuated"
    """Event and history event: stopped on a cluster it may not stay on (residency drift, cluster deleted),
    with nowhere to go."""
    LOST = "Lost"
    """Event and history event: its cluster is lost and no other cluster is feasible; the placement is given up."""
    REFUSED = "Refused"
    """History event: the member refused the object (see the KindNotServed / MemberRejected reason)."""


class GPURequest(ApiModel):
    """GPUs per replica."""

    count: Annotated[StrictInt, Field(ge=1, le=MAX_GPUS_PER_REPLICA)]
    """GPUs per replica (>= 1)."""
    models: Annotated[
        list[Token], Field(default_factory=list, max_length=MAX_MODELS, json_schema_extra=SET), NoDuplicates
    ]
    """Acceptable GPU models; empty = any."""
    min_memory_gib: Annotated[StrictInt, Field(ge=1, le=4096)] | None = Field(
        default=None, alias="minMemoryGiB"
    )
    """Minimum memory of one GPU in GiB."""


class Residency(ApiModel):
    """Where the workload's data may go."""

    data_classification: DataClassification = DataClassification.INTERNAL
    """Public | Internal | Confidential | Restricted; selects a classification rule of the policy."""
    jurisdictions: Annotated[
        list[Jurisdiction],
        Field(default_factory=list, max_length=MAX_JURISDICTIONS, json_schema_extra=SET),
        NoDuplicates,
    ]
    """The cluster's jurisdiction must be one of these; empty = any."""
    operator_jurisdictions: Annotated[
        list[Jurisdiction],
        Field(default_factory=list, max_length=MAX_JURISDICTIONS, json_schema_extra=SET),
        NoDuplicates,
    ]
    """The cluster's operatorJurisdiction (who runs the service) must be one of these; empty = any. A cluster
    whose operator jurisdiction is not declared never matches a non-empty list."""
    tiers: Annotated[list[Tier], Field(default_factory=list, max_length=3, json_schema_extra=SET), NoDuplicates]
    """Allowed tiers; empty = any."""
    required_labels: Annotated[
        list[Token], Field(default_factory=list, max_length=MAX_LABELS, json_schema_extra=SET), NoDuplicates
    ]
    """Every one must be in the cluster's residencyLabels."""


class Budget(ApiModel):
    """The most the workload may pay per GPU-hour (compared in the policy's base currency)."""

    max_price_per_gpu_hour: Annotated[Price, Field(alias="maxPricePerGPUHour")]
    """The highest price of one GPU for one hour, in `currency`; clusters above it are not candidates."""
    currency: Currency
    """ISO 4217 code of maxPricePerGPUHour; needs an exchange rate unless it is the base currency."""


class Placement(ApiModel):
    """How to choose among feasible clusters."""

    cluster_selector: LabelSelector | None = None
    """Only GPUClusters whose metadata.labels match."""
    weights: Weights | None = None
    """When given, REPLACES the policy's weights; plugins left out weigh 0."""
    served_from: Annotated[list[Text], Field(default_factory=list, max_length=MAX_MODELS, json_schema_extra=SET),
                           NoDuplicates]
    """Regions the workload's users or data are in (inference): the `latency` score prefers clusters whose
    spec.region is close to them, by the PlacementPolicy's latencyMilliseconds (the mean over these)."""


class Migration(ApiModel):
    """When the operator may move the workload to another cluster."""

    policy: MigrationPolicy = MigrationPolicy.ON_FAILURE
    """Never: stay where placed. OnFailure (default): move when the cluster is lost, keeps the pods unschedulable, is
    evacuated or drifts out of residency. CostAware: also move when much cheaper elsewhere."""
    min_savings_percent: Annotated[StrictInt, Field(ge=0, le=100)] = 20
    """CostAware: move only when the price drops by at least this much."""
    cooldown_seconds: Annotated[StrictInt, Field(ge=0, le=7 * 24 * 3600)] = 1800
    """Minimum time between two migrations."""


class EmbeddedResource(BaseModel):
    """A whole Kubernetes object kept as is, apart from what the apiserver checks of an embedded resource."""

    model_config = ConfigDict(
        extra="allow",
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        json_schema_extra=lambda schema, _cls: _embedded_schema(schema),
    )

    api_version: Annotated[str, StringConstraints(min_length=1)] = Field(alias="apiVersion")
    kind: Annotated[str, StringConstraints(min_length=1)]
    metadata: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The object as plain data (extra fields included), ready to apply."""
        return self.model_dump(by_alias=True, exclude_none=True)


def _embedded_schema(schema: dict[str, Any]) -> None:
    schema.clear()
    schema.update({
        "type": "object",
        "description": "The object created in the chosen cluster, in the workload's namespace (e.g. a batch/v1 "
        "Job).",
        "x-kubernetes-embedded-resource": True,
        "x-kubernetes-preserve-unknown-fields": True,
    })


class AIWorkloadSpec(ApiModel):
    """A GPU workload and the rules for where it may run."""

    gpu: GPURequest
    replicas: Annotated[StrictInt, Field(ge=1, le=MAX_REPLICAS)] = 1
    """Gang: replicas x gpu.count must fit in ONE cluster and ONE model."""
    residency: Residency = Field(default_factory=lambda: Residency.model_validate({}))
    budget: Budget | None = None
    placement: Placement = Field(default_factory=lambda: Placement.model_validate({}))
    migration: Migration = Field(default_factory=lambda: Migration())
    template: EmbeddedResource
    """The object created in the chosen cluster, in the workload's namespace (e.g. a batch/v1 Job)."""

    @property
    def total_gpus(self) -> int:
        return self.replicas * self.gpu.count


class PlacementStatus(ApiModel):
    """Where the workload runs (or is going)."""

    cluster: Text
    """The GPUCluster it runs on."""
    tier: Tier | None = None
    """That cluster's tier."""
    jurisdiction: Jurisdiction | None = None
    """That cluster's jurisdiction."""
    gpu_model: Token | None = None
    """The GPU model it was given."""
    price_per_gpu_hour: Annotated[Price | None, Field(alias="pricePerGPUHour")] = None
    """Price of one GPU-hour in `currency` (the policy's base currency)."""
    currency: Currency | None = None
    """The currency of pricePerGPUHour: the policy's base currency."""
    list_price_per_gpu_hour: Annotated[Price | None, Field(alias="listPricePerGPUHour")] = None
    """The cluster's own price for the model, in `listCurrency`, as the GPUCluster states it."""
    list_currency: Currency | None = None
    """The currency the cluster prices in."""
    exchange_rate: Annotated[float, Field(gt=0, le=1e9)] | None = None
    """Units of the base currency for one of listCurrency used for pricePerGPUHour (1 when they are the same)."""
    exchange_rates_as_of: Timestamp | None = None
    """When the policy's exchange rates were set, as the policy says (exchangeRatesAsOf)."""
    score: Annotated[float, Field(ge=0, le=100)] | None = None
    """Its weighted score, 0 to 100, among the feasible candidates when placed (tenbin explain shows the breakdown)."""
    gpus: Annotated[StrictInt, Field(ge=0)] | None = None
    """Total GPUs held: replicas x gpu.count."""


class HistoryEntry(ApiModel):
    """One placement event, newest last; the list keeps the last few."""

    time: Timestamp
    """When it happened (RFC 3339)."""
    event: Annotated[str, Field(max_length=64)]
    """Scheduled | Running | Succeeded | Failed | Migrated | Evacuated | MigrationFailed"""
    reason: Annotated[str, Field(max_length=64)] | None = None
    """For moves: ClusterLost | CapacityFailover | ResidencyDrift | Cost | Evacuation | Requested."""
    from_: Annotated[Text | None, Field(alias="from")] = None
    """For moves: the cluster the workload left."""
    cluster: Text | None = None
    """The cluster concerned (for moves, the one it went to)."""
    gpu_model: Token | None = None
    """The GPU model on that cluster."""
    price_per_gpu_hour: Annotated[Price | None, Field(alias="pricePerGPUHour")] = None
    """The price per GPU-hour there, in `currency`."""
    currency: Currency | None = None
    """The currency of pricePerGPUHour: the policy's base currency."""
    message: Message | None = None
    """The same in words."""


class MigrationStatus(ApiModel):
    """A migration in progress (or the last one)."""

    from_: Annotated[Text, Field(alias="from")]
    """The cluster it leaves."""
    to: Text
    """The cluster it goes to."""
    gpu_model: Token | None = None
    """The GPU model on the target cluster."""
    resume_hint: Message | None = None
    """Batch work: what the source reported in tenbin.io/checkpoint-done (passed to the target)."""
    reason: Message
    """Why it moves, a CamelCase token: ResidencyDrift, ClusterLost, CapacityFailover, Evacuation, Requested or
    Cost (the history entry's `reason`; objects written by Tenbin before 0.2 hold a sentence here)."""
    message: Message | None = None
    """The same in words ("cheaper by 25%: ¥360 < ¥480/GPU-h")."""
    phase: MigrationPhase
    started_at: Timestamp
    """When the move was decided (RFC 3339)."""
    deadline: Timestamp | None = None
    """When a move that has not completed is given up (the source keeps running)."""


class AIWorkloadStatus(ApiModel):
    """Observed state, written by the operator."""

    phase: WorkloadPhase | None = None
    """Pending, Scheduled (placed, pods starting), Running, Migrating, Succeeded, Failed or Unschedulable."""
    placement: PlacementStatus | None = None
    message: Message | None = None
    """Why: the diagnosis when unschedulable, the score breakdown when placed."""
    observed_generation: Annotated[StrictInt, Field(ge=0)] | None = None
    """The metadata.generation the status was written for."""
    conditions: Conditions
    """Valid (the spec is usable), Scheduled (placed, or why not), Ready (running in the member), Applied (the
    member took the latest template), PlacementConflict (the spec no longer fits where it runs), DependenciesSynced
    (what the pod templates reference is in the member)."""
    history: Annotated[list[HistoryEntry], Field(default_factory=list, max_length=MAX_HISTORY)]
    """The last placement events, newest last."""
    migration: MigrationStatus | None = None
    replace_request: Message | None = None
    """The tenbin.io/replace value Tenbin last acted on. The annotation stays (a GitOps tool that keeps it in
    Git never sees it undone); a new value is a new request."""


class AIWorkload(ApiModel):
    """A GPU workload to place on exactly one member cluster, within residency rules and a budget."""

    model_config = ConfigDict(title="AIWorkload")

    api_version: Literal["tenbin.io/v1alpha1"] = Field(default="tenbin.io/v1alpha1", alias="apiVersion")
    kind: Literal["AIWorkload"] = "AIWorkload"
    metadata: ObjectMeta
    spec: AIWorkloadSpec
    status: AIWorkloadStatus | None = None

    @property
    def key(self) -> str:
        """NAMESPACE/NAME (namespace `default` when unset)."""
        return f"{self.metadata.namespace or 'default'}/{self.metadata.name}"


__all__ = [
    "AIWorkload",
    "AIWorkloadSpec",
    "AIWorkloadStatus",
    "Budget",
    "EmbeddedResource",
    "GPURequest",
    "HistoryEntry",
    "Migration",
    "MigrationPhase",
    "MigrationPolicy",
    "MigrationStatus",
    "Placement",
    "PlacementStatus",
    "Reason",
    "Residency",
    "Text",
    "WorkloadCondition",
    "WorkloadPhase",
]
