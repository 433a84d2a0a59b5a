"""PlacementPolicy: fleet-wide placement settings (cluster-scoped; the one named `default` applies)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, StringConstraints, field_validator, model_validator

from tenbin.api.common import (
    CURRENCIES,
    MAX_CURRENCIES,
    MAX_JURISDICTIONS,
    MAX_LABELS,
    SET,
    ApiModel,
    Currency,
    DataClassification,
    Jurisdiction,
    Name,
    NoDuplicates,
    ObjectMeta,
    StrictBool,
    StrictInt,
    Text,
    Tier,
    Timestamp,
    Token,
    Weights,
    cel,
    cel_list,
    list_map,
    unique_by,
)

DEFAULT_POLICY_NAME = "default"
DEFAULT_WEIGHTS = Weights(price=0.5, availability=0.5)

_RATE_KEYS_RULE = cel(
    f"self.all(k, k in {cel_list(CURRENCIES)})",
    "exchange-rate keys must be ISO 4217 currency codes, such as USD",
)
_KNOWN_CURRENCIES = frozenset(CURRENCIES)
_BASE_RATE_RULE = cel(
    "!has(self.exchangeRates) || !(self.baseCurrency in self.exchangeRates) "
    "|| self.exchangeRates[self.baseCurrency] == 1.0",
    "the base currency's own exchange rate, when listed, must be 1.0",
    field_path=".exchangeRates",
)


class ClassificationRule(ApiModel):
    """Where data of one classification may go. Replaces the built-in rule for that classification."""

    classification: DataClassification
    allowed_tiers: Annotated[
        list[Tier], Field(default_factory=list, max_length=3, json_schema_extra=SET), NoDuplicates
    ]
    """Empty = any tier."""
    allowed_jurisdictions: Annotated[
        list[Jurisdiction],
        Field(default_factory=list, max_length=MAX_JURISDICTIONS, json_schema_extra=SET),
        NoDuplicates,
    ]
    """Empty = any jurisdiction."""
    allowed_operator_jurisdictions: Annotated[
        list[Jurisdiction],
        Field(default_factory=list, max_length=MAX_JURISDICTIONS, json_schema_extra=SET),
        NoDuplicates,
    ]
    """Where the cluster's operator (GPUCluster operatorJurisdiction) may be; empty = any; an undeclared one
    does not match."""
    required_labels: Annotated[
        list[Token], Field(default_factory=list, max_length=MAX_LABELS, json_schema_extra=SET), NoDuplicates
    ]
    """Every one must be in the cluster's residencyLabels."""


ExchangeRate = Annotated[float, Field(gt=0, le=1e9, strict=True)]
Milliseconds = Annotated[float, Field(ge=0, le=1e6, strict=True)]

BUILT_IN_KINDS = (("v1", "Pod"), ("batch/v1", "Job"), ("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"),
                  ("apps/v1", "ReplicaSet"), ("apps/v1", "DaemonSet"), ("jobset.x-k8s.io/v1alpha2", "JobSet"),
                  ("kubeflow.org/v1", "PyTorchJob"), ("ray.io/v1", "RayJob"),
                  ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"))
"""(apiVersion, kind) Tenbin knows without a policy (`tenbin.kinds` checks its table against this list)."""
MAX_KINDS = 16
MAX_PHASE_VALUES = 8

FieldPath = Annotated[
    str, StringConstraints(min_length=1, max_length=256,
                           pattern=r"^[A-Za-z_][A-Za-z0-9_-]*(\[[0-9]+\])*(\.[A-Za-z_][A-Za-z0-9_-]*(\[[0-9]+\])*)*$"),
]
"""A field of the object, from its root: `spec.template`, `spec.groups[0].replicas` (keys and list indexes)."""
PhaseValue = Annotated[str, StringConstraints(min_length=1, max_length=63)]
PhaseValues = Annotated[
    list[PhaseValue], Field(default_factory=list, max_length=MAX_PHASE_VALUES, json_schema_extra=SET), NoDuplicates
]
_KIND_RULE = cel(f"!((self.apiVersion + ' ' + self.kind) in {cel_list(tuple(f'{a} {k}' for a, k in BUILT_IN_KINDS))})",
                 "is built in; its row cannot be replaced (only kinds Tenbin does not know can be declared)",
                 field_path=".kind")
_PHASE_SOURCE_RULE = cel("has(self.path) != self.fromConditions",
                         "give exactly one of path (a string field) or fromConditions: true")


class PodTemplateRef(ApiModel):
    """One pod template of a declared kind: where it is, and how many pods of it run at once."""

    path: FieldPath
    """The PodTemplateSpec (metadata + spec), e.g. `spec.template`; Tenbin labels it (that is how the member's
    pods are counted once), pins it to the chosen GPU model and checks its nvidia.com/gpu requests."""
    replicas_path: FieldPath | None = None
    """The integer field that says how many pods of this template run at once, e.g. `spec.workers`."""
    default_replicas: Annotated[StrictInt, Field(ge=0, le=1024)] = 1
    """Pods of this template when `replicasPath` is not given or the field is absent."""


class PhaseRule(ApiModel):
    """How the kind's own status reads as Running / Succeeded / Failed (failed is checked first, then succeeded,
    then running). Without a rule, the work is Running once all its labelled pods are bound."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [_PHASE_SOURCE_RULE]})

    path: FieldPath | None = None
    """A string field, e.g. `status.phase`, compared with the values below."""
    from_conditions: StrictBool = False
    """Instead of a field: the values below are condition types in `status.conditions` with status "True"."""
    running: PhaseValues
    """Values (or condition types) that mean the work runs."""
    succeeded: PhaseValues
    """Values (or condition types) that mean it finished well (run-once work is not applied again)."""
    failed: PhaseValues
    """Values (or condition types) that mean it failed (checked first)."""

    @model_validator(mode="after")
    def _one_source(self) -> PhaseRule:
        if (self.path is not None) == self.from_conditions:
            raise ValueError(_PHASE_SOURCE_RULE["message"])
        return self


class WorkloadKindRule(ApiModel):
    """A workload kind Tenbin does not know, declared so it can be placed: where its pod templates are (to count
    its GPUs), how its status reads, how it moves and how it is suspended."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [_KIND_RULE]})

    api_version: Annotated[
        str, StringConstraints(min_length=3, max_length=253, pattern=r"^[a-z0-9.-]+/[a-z0-9]+$"),
    ]
    """group/version of the custom resource, e.g. `trainer.example.com/v1` (not a core kind)."""
    kind: Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=r"^[A-Z][A-Za-z0-9]*$")]
    """The kind, as the template's `kind` names it (with apiVersion, unique in this list; a kind of another
    group may share a built-in kind's name, e.g. Volcano's `batch.volcano.sh/v1alpha1` Job)."""
    pod_templates: Annotated[
        list[PodTemplateRef],
        # keyed by path: server-side apply owns each entry (an atomic list with a defaulted field inside
        # conflicts with another field manager that applies the same list)
        Field(min_length=1, max_length=8, json_schema_extra=list_map("path")),
        AfterValidator(lambda v: unique_by(v, "path")),
    ]
    """Every pod template of the kind: a GPU the object's pods use that is in none of them is not counted."""
    phase: PhaseRule | None = None
    move_strategy: Literal["Checkpoint", "MakeBeforeBreak"] = "Checkpoint"
    """Checkpoint: run-once work (checkpoint, stop, start on the target; never two copies). MakeBeforeBreak:
    a service (the new copy runs before the old one stops; a lost member's copy is replaced at once)."""
    suspend_path: FieldPath | None = None
    """A boolean that suspends the object (no pods while true), e.g. `spec.suspend`."""

    @model_validator(mode="after")
    def _not_built_in(self) -> WorkloadKindRule:
        if (self.api_version, self.kind) in BUILT_IN_KINDS:
            raise ValueError(f"kind: {self.api_version} {self.kind} {_KIND_RULE['message']}")
        return self


MAX_ATTESTATIONS = 256
_ATTESTATION_TARGET_RULE = cel("(has(self.clusters) && size(self.clusters) > 0) || "
                               "(has(self.providers) && size(self.providers) > 0)",
                               "name the GPUClusters (clusters) or the providers (providers) it covers")


class Attestation(ApiModel):
    """A residency label the policy vouches for, for some clusters, until a date: an ISMAP registration, an
    audit report, a contract clause. A label any attestation names counts only through attestations from
    then on: a GPUCluster's own residencyLabels entry for it is no longer enough."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [_ATTESTATION_TARGET_RULE]})

    label: Token
    """The residency label it vouches for (what workloads and rules name in requiredLabels), e.g. `ismap`."""
    clusters: Annotated[list[Name], Field(default_factory=list, max_length=MAX_LABELS, json_schema_extra=SET),
                        NoDuplicates]
    """The GPUClusters it covers, by name."""
    providers: Annotated[list[Text], Field(default_factory=list, max_length=MAX_LABELS, json_schema_extra=SET),
                         NoDuplicates]
    """Or every GPUCluster whose spec.provider is one of these (a provider-wide registration)."""
    valid_until: Timestamp
    """When it lapses (RFC 3339). From then on the clusters lack the label: residency drift, and the work that
    needs it moves (an Event on the GPUCluster warns `attestationWarningDays` before)."""
    evidence: Text | None = None
    """Where it is written down (a register entry, a report id, a URL); shown, never compared."""

    @model_validator(mode="after")
    def _covers_something(self) -> Attestation:
        if not self.clusters and not self.providers:
            raise ValueError(_ATTESTATION_TARGET_RULE["message"])
        return self


def _unique_kinds(rules: list[WorkloadKindRule]) -> list[WorkloadKindRule]:
    seen: set[tuple[str, str]] = set()
    for i, r in enumerate(rules):
        if (r.api_version, r.kind) in seen:
            raise ValueError(f"duplicate apiVersion/kind {r.api_version} {r.kind} at index {i}")
        seen.add((r.api_version, r.kind))
    return rules


class PlacementPolicySpec(ApiModel):
    """Base currency, exchange rates, default weights and classification rules."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [_BASE_RATE_RULE]})

    base_currency: Currency
    """Prices and budgets are compared, scored and reported in this ISO 4217 currency."""
    exchange_rates: Annotated[
        dict[str, ExchangeRate],
        Field(
            default_factory=dict,
            json_schema_extra={"maxProperties": MAX_CURRENCIES, "x-kubernetes-validations": [_RATE_KEYS_RULE]},
        ),
    ]
    """Units of baseCurrency for one unit of the key currency, e.g. {USD: 150.0}. A change re-prices every
    candidate at once (and may move CostAware work, within its hysteresis); keep it current from a CronJob or
    an operator of yours (docs/install.md, "Exchange rates over time")."""
    exchange_rates_source: Text | None = None
    """Where the rates come from (e.g. `MUFG TTM`, `ECB reference rates`); shown, never compared."""
    exchange_rates_as_of: Timestamp | None = None
    """When they were taken; recorded in each placement it prices (status.placement.exchangeRatesAsOf)."""
    weights: Weights = Field(default_factory=lambda: DEFAULT_WEIGHTS.model_copy())
    """Default score weights (a workload's placement.weights replaces them)."""
    classification_rules: Annotated[
        list[ClassificationRule],
        Field(default_factory=list, max_length=4, json_schema_extra=list_map("classification")),
        AfterValidator(lambda v: unique_by(v, "classification")),
    ]
    """Rules that replace the built-in ones (Restricted: OnPrem; Confidential: OnPrem or SovereignCloud;
    Internal and Public: any tier)."""
    copy_secrets_for: Annotated[
        list[DataClassification], Field(default_factory=list, max_length=4, json_schema_extra=SET), NoDuplicates
    ]
    """Classifications whose workloads' Secrets Tenbin copies into their member, from hub namespaces labelled
    `tenbin.io/copy-secrets: "true"` (both are needed; by default no Secret leaves the hub). ConfigMaps,
    ServiceAccounts and PriorityClasses the pod templates reference are always copied."""
    workload_kinds: Annotated[
        list[WorkloadKindRule],
        Field(default_factory=list, max_length=MAX_KINDS, json_schema_extra=list_map("apiVersion", "kind")),
        AfterValidator(_unique_kinds),
    ]
    """Workload kinds beyond the built-in ones (Job, Deployment, StatefulSet, JobSet, PyTorchJob, RayJob,
    LeaderWorkerSet, ...): an AIWorkload template of any other kind is refused (`Valid=False`)."""
    latency_milliseconds: Annotated[
        dict[str, Annotated[dict[str, Milliseconds], Field(json_schema_extra={"maxProperties": 128})]],
        Field(default_factory=dict, json_schema_extra={"maxProperties": 128}),
    ]
    """Round-trip latency between regions, {from: {to: ms}}, read both ways (jp-tokyo -> jp-ishikari is
    ishikari -> tokyo too); a region's latency to itself is 0. Used by the `latency` score: a cluster whose
    region has no entry for a servedFrom region scores 0 there."""
    attestations: Annotated[list[Attestation], Field(default_factory=list, max_length=MAX_ATTESTATIONS)]
    """Residency labels vouched for by the policy, with an expiry (see Attestation)."""
    attestation_warning_days: Annotated[StrictInt, Field(ge=0, le=365)] = 30
    """How long before an attestation lapses the GPUClusters it covers get a Warning event."""

    @field_validator("exchange_rates")
    @classmethod
    def _currency_keys(cls, rates: dict[str, float]) -> dict[str, float]:
        if len(rates) > MAX_CURRENCIES:
            raise ValueError(f"at most {MAX_CURRENCIES} exchange rates")
        for key in rates:
            if key not in _KNOWN_CURRENCIES:
                raise ValueError(f"{key!r}: {_RATE_KEYS_RULE['message']}")
        return rates

    @model_validator(mode="after")
    def _base_rate_is_one(self) -> PlacementPolicySpec:
        if self.exchange_rates.get(self.base_currency, 1.0) != 1.0:
            raise ValueError(f"exchangeRates: {_BASE_RATE_RULE['message']}")
        return self


class PlacementPolicy(ApiModel):
    """Fleet-wide placement settings; the one named `default` applies."""

    model_config = ConfigDict(title="PlacementPolicy")

    api_version: Literal["tenbin.io/v1alpha1"] = Field(default="tenbin.io/v1alpha1", alias="apiVersion")
    kind: Literal["PlacementPolicy"] = "PlacementPolicy"
    metadata: ObjectMeta
    spec: PlacementPolicySpec
    status: PolicyStatus | None = None


class PolicyStatus(ApiModel):
    """Observed state, written by the operator."""

    observed_generation: Annotated[StrictInt, Field(ge=0)] | None = None
    """Reserved: the operator writes no PlacementPolicy status yet (it reads the policy on every change)."""


PlacementPolicy.model_rebuild()

__all__ = [
    "BUILT_IN_KINDS",
    "DEFAULT_POLICY_NAME",
    "DEFAULT_WEIGHTS",
    "Attestation",
    "ClassificationRule",
    "PhaseRule",
    "PlacementPolicy",
    "PlacementPolicySpec",
    "PodTemplateRef",
    "PolicyStatus",
    "WorkloadKindRule",
]
