"""Shared building blocks of the tenbin.io/v1alpha1 API: enums, bounded scalar types, object metadata.

Every string, list and map here is bounded, because the generated CRD schema must let the apiserver's
CEL cost estimator prove each rule cheap. The same bounds hold in pydantic, so `tenbin simulate`
rejects exactly what the apiserver rejects.
"""

from __future__ import annotations

from collections.abc import Hashable
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import pycountry
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonDict

GROUP = "tenbin.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# --- bounds (one place, so the schema and the docs agree) -------------------------------------------
MAX_NAME = 63  # DNS label / label value
MAX_LABEL_KEY = 317  # optional DNS-subdomain prefix (253) + "/" + name (63)
MAX_TEXT = 256  # short free text: provider, region, reason
MAX_MESSAGE = 4096  # human-readable messages (diagnosis summaries)
MAX_LABELS = 32  # residency labels, label-selector entries
MAX_MODELS = 16  # GPU models per cluster / per request
MAX_JURISDICTIONS = 64
MAX_CURRENCIES = 64
MAX_CONDITIONS = 16
MAX_HISTORY = 20
MAX_GPUS = 100_000  # GPUs of one model in one cluster
MAX_GPUS_PER_REPLICA = 1024
MAX_REPLICAS = 1024
MAX_PRICE = 1e9  # per GPU-hour, any currency
MAX_WEIGHT = 100.0


class Tier(StrEnum):
    """Where a cluster sits on the sovereignty ladder."""

    ON_PREM = "OnPrem"
    SOVEREIGN_CLOUD = "SovereignCloud"
    HYPERSCALER = "Hyperscaler"


class DataClassification(StrEnum):
    """How sensitive a workload's data is; selects a classification rule."""

    PUBLIC = "Public"
    INTERNAL = "Internal"
    CONFIDENTIAL = "Confidential"
    RESTRICTED = "Restricted"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


# --- bounded scalars ----------------------------------------------------------------------------------
StrictInt = Annotated[int, Strict()]
StrictBool = Annotated[bool, Strict()]
Number = Annotated[float, Strict()]  # strict float still accepts an int, never a bool or a string

Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_NAME, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
]
Token = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=MAX_NAME, pattern=r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$"
    ),
]
"""A GPU model name or residency label: `H100-80GB`, `ismap`, `jp-domestic-operator`. Compared exactly."""

Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
Message = Annotated[str, StringConstraints(max_length=MAX_MESSAGE)]
LabelKey = Annotated[str, StringConstraints(min_length=1, max_length=MAX_LABEL_KEY)]
LabelValue = Annotated[str, StringConstraints(max_length=MAX_NAME)]
Timestamp = Annotated[datetime, WithJsonSchema({"type": "string", "format": "date-time", "maxLength": 64})]

Price = Annotated[float, Strict(), Field(ge=0, le=MAX_PRICE)]
Weight = Annotated[float, Strict(), Field(ge=0, le=MAX_WEIGHT)]

H = TypeVar("H", bound=Hashable)


def _no_duplicates(items: list[H]) -> list[H]:
    seen: set[H] = set()
    for i, item in enumerate(items):
        if item in seen:
            raise ValueError(f"duplicate entry {str(item)!r} at index {i}")
        seen.add(item)
    return items


# A list the apiserver treats as a set (`x-kubernetes-list-type: set`): duplicates are rejected.
NoDuplicates = AfterValidator(_no_duplicates)
SET: JsonDict = {"x-kubernetes-list-type": "set"}


def list_map(*keys: str) -> JsonDict:
    """Schema extension for a list of objects keyed by `keys` (`x-kubernetes-list-type: map`)."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


def unique_by(items: list[Any], attr: str) -> list[Any]:
    """Validator body for list-map lists: each `attr` value at most once."""
    seen: set[Any] = set()
    for i, item in enumerate(items):
        key = getattr(item, attr)
        if key in seen:
            raise ValueError(f"duplicate {to_camel(attr)} {str(key)!r} at index {i}")
        seen.add(key)
    return items


def cel(rule: str, message: str, field_path: str | None = None, reason: str | None = None) -> JsonDict:
    """One `x-kubernetes-validations` entry. Every CEL rule is mirrored by a pydantic validator."""
    out: JsonDict = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    if reason:
        out["reason"] = reason
    return out


# --- ISO codes, checked against the real lists (pycountry's copies of ISO 3166-1 and ISO 4217) -----------
COUNTRIES: tuple[str, ...] = tuple(sorted(c.alpha_2 for c in pycountry.countries))
CURRENCIES: tuple[str, ...] = tuple(sorted(c.alpha_3 for c in pycountry.currencies))


def cel_list(codes: tuple[str, ...]) -> str:
    """A CEL list literal of string constants."""
    return "[" + ",".join(f"'{c}'" for c in codes) + "]"


def _member_of(codes: tuple[str, ...], what: str) -> AfterValidator:
    known = frozenset(codes)

    def check(value: str) -> str:
        if value not in known:
            raise ValueError(f"{value!r} is not an {what} code")
        return value

    return AfterValidator(check)


JURISDICTION_RULE = cel(f"self in {cel_list(COUNTRIES)}", "must be an ISO 3166-1 alpha-2 country code, such as JP")
CURRENCY_RULE = cel(f"self in {cel_list(CURRENCIES)}", "must be an ISO 4217 currency code, such as JPY")

Jurisdiction = Annotated[
    str, StringConstraints(min_length=2, max_length=2, pattern=r"^[A-Z]{2}$"),
    _member_of(COUNTRIES, "ISO 3166-1 alpha-2 country"), Field(json_schema_extra={"x-kubernetes-validations": [
        JURISDICTION_RULE]}),
]
"""ISO 3166-1 alpha-2, upper case, a code the standard assigns (JP, US, DE; not EU)."""

Currency = Annotated[
    str, StringConstraints(min_length=3, max_length=3, pattern=r"^[A-Z]{3}$"),
    _member_of(CURRENCIES, "ISO 4217 currency"), Field(json_schema_extra={"x-kubernetes-validations": [
        CURRENCY_RULE]}),
]
"""ISO 4217, upper case, a code the standard assigns (JPY, USD, EUR)."""


class ApiModel(BaseModel):
    """Base of every spec/status model: camelCase on the wire, unknown fields are errors."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        use_attribute_docstrings=True,
        frozen=False,
    )


class ObjectMeta(BaseModel):
    """The parts of metadata Tenbin reads; everything else the apiserver sets is accepted and ignored."""

    model_config = ConfigDict(extra="ignore", validate_by_name=True, validate_by_alias=True)

    name: Annotated[str, StringConstraints(min_length=1, max_length=253)]
    namespace: Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME)] | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    generation: int | None = None
    uid: str | None = None
    resource_version: str | None = Field(default=None, alias="resourceVersion")


class Condition(ApiModel):
    """A Kubernetes-style condition (same shape as metav1.Condition)."""

    type: Annotated[str, StringConstraints(min_length=1, max_length=MAX_LABEL_KEY)]
    """The aspect this condition reports: Valid, Scheduled, Ready, ... (one condition per type)."""
    status: ConditionStatus
    """True, False or Unknown."""
    reason: Annotated[str, StringConstraints(max_length=1024)] | None = None
    """Why, a CamelCase token tools can match on (NoClusterCanFit, MemberUnreachable, ...)."""
    message: Message | None = None
    """The same in words, naming the field or the cluster concerned."""
    last_transition_time: Timestamp | None = None
    """When status last changed (RFC 3339)."""
    observed_generation: Annotated[int, Strict(), Field(ge=0)] | None = None
    """The metadata.generation this condition was set for: older than the object's generation means the current spec
    has not been judged yet."""


Conditions = Annotated[
    list[Condition],
    Field(default_factory=list, max_length=MAX_CONDITIONS, json_schema_extra=list_map("type")),
    AfterValidator(lambda v: unique_by(v, "type")),
]


class LabelSelectorOperator(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


_SELECTOR_RULE = cel(
    "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0)"
    " : (!has(self.values) || size(self.values) == 0)",
    "values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist",
    field_path=".values",
)


class LabelSelectorRequirement(ApiModel):
    """One `matchExpressions` entry, as in metav1.LabelSelectorRequirement."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [_SELECTOR_RULE]})

    key: LabelKey
    """The label key."""
    operator: LabelSelectorOperator
    """In, NotIn, Exists or DoesNotExist."""
    values: Annotated[
        list[LabelValue], Field(default_factory=list, max_length=MAX_LABELS, validate_default=True)
    ]
    """For In and NotIn, the values (at least one); empty for Exists and DoesNotExist."""

    @field_validator("values")
    @classmethod
    def _values_match_operator(cls, values: list[str], info: ValidationInfo) -> list[str]:
        op = info.data.get("operator")
        if op is not None and (op in (LabelSelectorOperator.IN, LabelSelectorOperator.NOT_IN)) != bool(values):
            raise ValueError(_SELECTOR_RULE["message"])
        return values


class LabelSelector(ApiModel):
    """Selects GPUClusters by their metadata.labels (AND of all terms)."""

    match_labels: Annotated[
        dict[LabelKey, LabelValue], Field(default_factory=dict, json_schema_extra={"maxProperties": MAX_LABELS})
    ]
    """Every label here must be on the GPUCluster with this value."""
    match_expressions: Annotated[
        list[LabelSelectorRequirement], Field(default_factory=list, max_length=MAX_LABELS)
    ]
    """Every requirement here must hold for the GPUCluster's labels."""

    def matches(self, labels: dict[str, str]) -> bool:
        """Scalar semantics of a selector (the vectorized core has its own; tests compare them)."""
        for k, v in self.match_labels.items():
            if labels.get(k) != v:
                return False
        for req in self.match_expressions:
            present = req.key in labels
            if req.operator is LabelSelectorOperator.IN and not (present and labels[req.key] in req.values):
                return False
            if req.operator is LabelSelectorOperator.NOT_IN and present and labels[req.key] in req.values:
                return False
            if req.operator is LabelSelectorOperator.EXISTS and not present:
                return False
            if req.operator is LabelSelectorOperator.DOES_NOT_EXIST and present:
                return False
        return True

    def __str__(self) -> str:
        terms = [f"{k}={v}" for k, v in sorted(self.match_labels.items())]
        for r in self.match_expressions:
            if r.operator in (LabelSelectorOperator.IN, LabelSelectorOperator.NOT_IN):
                op = "in" if r.operator is LabelSelectorOperator.IN else "notin"
                terms.append(f"{r.key} {op} ({','.join(r.values)})")
            else:
                terms.append(r.key if r.operator is LabelSelectorOperator.EXISTS else f"!{r.key}")
        return ",".join(terms) or "<everything>"


class Weights(ApiModel):
    """Score-plugin weights. Given on a workload, they REPLACE the policy's; a plugin left out weighs 0."""

    price: Weight | None = None
    """Cheaper (in the base currency) is better."""
    availability: Weight | None = None
    """More free GPUs of the candidate's model is better."""
    latency: Weight | None = None
    """Closer to where the workload is served from is better (AIWorkload placement.servedFrom, measured by the
    PlacementPolicy's latencyMilliseconds between regions)."""

    def as_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name) or 0.0) for name in type(self).model_fields}
