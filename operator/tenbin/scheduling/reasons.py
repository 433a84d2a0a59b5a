"""Why a candidate was rejected: small values with one text form, shared by the engine and the reference.

A Reason has a `category` (what the summary counts: "residency", "insufficient H100-80GB", "over
budget") and a `detail` ("jurisdiction US not in [JP]", "free 4 < 8", "¥620 > ¥500/GPU-h").
Only the constructors below build reasons, so the vectorized engine and the scalar reference agree on
the text without sharing any of the logic that decides *whether* a reason applies.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

CURRENCY_SYMBOLS = {"JPY": "¥", "USD": "$", "EUR": "€", "GBP": "£"}


@dataclass(frozen=True, order=True)
class Reason:
    plugin: str
    category: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.category} ({self.detail})" if self.detail else self.category


def money(amount: float, currency: str) -> str:
    """¥480, $3.90, 12.50 CHF; whole amounts without decimals, thousands separated."""
    num = f"{round(amount):,}" if abs(amount - round(amount)) < 0.005 else f"{amount:,.2f}"
    sym = CURRENCY_SYMBOLS.get(currency)
    return f"{sym}{num}" if sym else f"{num} {currency}"


def listing(items: Iterable[str]) -> str:
    return "[" + ", ".join(sorted(items)) + "]"


# --- health --------------------------------------------------------------------------------------------
def cordoned() -> Reason:
    return Reason("health", "cordoned")


def not_ready(phase: str) -> Reason:
    return Reason("health", "not ready", f"phase {phase}")


# --- cluster selector ---------------------------------------------------------------------------------
def selector_mismatch(selector: str) -> Reason:
    return Reason("selector", "cluster selector", f"labels do not match {selector}")


# --- residency ----------------------------------------------------------------------------------------
def jurisdiction_not_allowed(jurisdiction: str, allowed: Iterable[str]) -> Reason:
    return Reason("residency", "residency", f"jurisdiction {jurisdiction} not in {listing(allowed)}")


def tier_not_allowed(tier: str, allowed: Iterable[str]) -> Reason:
    return Reason("residency", "residency", f"tier {tier} not in {listing(allowed)}")


def labels_missing(labels: Iterable[str]) -> Reason:
    labels = sorted(labels)
    return Reason("residency", "residency", f"missing label{'s' if len(labels) > 1 else ''} {', '.join(labels)}")


def rule_tier(classification: str, tier: str, allowed: Iterable[str]) -> Reason:
    return Reason("residency", "residency", f"{classification} data: tier {tier} not in {listing(allowed)}")


def rule_jurisdiction(classification: str, jurisdiction: str, allowed: Iterable[str]) -> Reason:
    return Reason(
        "residency", "residency", f"{classification} data: jurisdiction {jurisdiction} not in {listing(allowed)}"
    )


def _operator(jurisdiction: str, allowed: Iterable[str]) -> str:
    if not jurisdiction:
        return f"operator jurisdiction not declared (must be in {listing(allowed)})"
    return f"operator jurisdiction {jurisdiction} not in {listing(allowed)}"


def operator_not_allowed(jurisdiction: str, allowed: Iterable[str]) -> Reason:
    return Reason("residency", "residency", _operator(jurisdiction, allowed))


def rule_operator(classification: str, jurisdiction: str, allowed: Iterable[str]) -> Reason:
    return Reason("residency", "residency", f"{classification} data: {_operator(jurisdiction, allowed)}")


def rule_labels(classification: str, labels: Iterable[str]) -> Reason:
    labels = sorted(labels)
    s = "s" if len(labels) > 1 else ""
    return Reason("residency", "residency", f"{classification} data: missing label{s} {', '.join(labels)}")


# --- GPU model and memory ---------------------------------------------------------------------------
def model_not_requested(model: str, requested: Iterable[str]) -> Reason:
    return Reason("model", "model", f"{model} not in {listing(requested)}")


def too_little_memory(model: str, memory_gib: float, minimum: int) -> Reason:
    return Reason("model", "GPU memory", f"{model} {memory_gib:g} GiB < {minimum} GiB")


# --- capacity -----------------------------------------------------------------------------------------
def insufficient(model: str, free: int, need: int) -> Reason:
    return Reason("capacity", f"insufficient {model}", f"free {free} < {need}")


# --- budget / pricing ---------------------------------------------------------------------------------
def over_budget(price_base: float, budget_base: float, base: str) -> Reason:
    return Reason("budget", "over budget", f"{money(price_base, base)} > {money(budget_base, base)}/GPU-h")


def unpriced(currency: str, base: str) -> Reason:
    return Reason("budget", "unpriced", f"no exchange rate {currency}->{base}")


def budget_currency_unknown(currency: str, base: str) -> Reason:
    return Reason("budget", "budget currency", f"no exchange rate {currency}->{base}")


# --- excluded by the caller ----------------------------------------------------------------------------
def kind_not_served(kind: str) -> Reason:
    """The member does not serve the template's kind (API discovery, or its answer to an apply)."""
    return Reason("excluded", "kind", f"{kind} not served")


def excluded(why: str) -> Reason:
    """Taken out of this one decision by the operator (a kind the member does not serve, a move's source)."""
    return Reason("excluded", "excluded", why)
