"""PlacementPolicy: fleet-wide placement settings (cluster-scoped; the one named `default` applies)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, field_validator, model_validator

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
    NoDuplicates,
    ObjectMeta,
    StrictInt,
    Tier,
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
    required_labels: Annotated[
        list[Token], Field(default_factory=list, max_length=MAX_LABELS, json_schema_extra=SET), NoDuplicates
    ]
    """Every one must be in the cluster's residencyLabels."""


ExchangeRate = Annotated[float, Field(gt=0, le=1e9, strict=True)]


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
    """Units of baseCurrency for one unit of the key currency, e.g. {USD: 150.0}."""
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
    "DEFAULT_POLICY_NAME",
    "DEFAULT_WEIGHTS",
    "ClassificationRule",
    "PlacementPolicy",
    "PlacementPolicySpec",
    "PolicyStatus",
]
