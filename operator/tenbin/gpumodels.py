"""Canonical GPU model names and the product names NVIDIA's GPU Feature Discovery puts on Nodes.

Tenbin compares models by canonical name (``H100-80GB``); member clusters label Nodes with GFD's
``nvidia.com/gpu.product`` (``NVIDIA-H100-80GB-HBM3``). This table maps between the two, both ways.
Pure data and string functions: safe to import from any layer.
"""

from __future__ import annotations

import re

# canonical name -> the product label GFD publishes for it (the most common SKU of each).
PRODUCTS: dict[str, str] = {
    "H100-80GB": "NVIDIA-H100-80GB-HBM3",
    "H100-94GB": "NVIDIA-H100-NVL",
    "H200-141GB": "NVIDIA-H200",
    "B200-180GB": "NVIDIA-B200",
    "GH200-96GB": "NVIDIA-GH200-480GB",
    "A100-80GB": "NVIDIA-A100-SXM4-80GB",
    "A100-40GB": "NVIDIA-A100-SXM4-40GB",
    "L40S-48GB": "NVIDIA-L40S",
    "L4-24GB": "NVIDIA-L4",
    "A10G-24GB": "NVIDIA-A10G",
    "T4-16GB": "Tesla-T4",
}

# other product labels seen in the field for the same canonical models. Node affinity matches label values
# exactly, so each is spelled as it appears on Nodes: GFD (and Tenbin's agent, `gfd_product`) writes the NVML
# device name with spaces turned into dashes, case kept (``NVIDIA H100 PCIe`` -> ``NVIDIA-H100-PCIe``);
# the all-capitals spellings are kept for Nodes an admin labelled by hand.
_ALIASES: dict[str, str] = {
    "NVIDIA-H100-PCIe": "H100-80GB",
    "NVIDIA-H100-PCIE": "H100-80GB",
    "NVIDIA-H100-80GB-PCIE": "H100-80GB",
    "NVIDIA-H100-SXM5-80GB": "H100-80GB",
    "NVIDIA-H200-141GB-HBM3E": "H200-141GB",
    "NVIDIA-A100-PCIE-80GB": "A100-80GB",
    "NVIDIA-A100-80GB-PCIe": "A100-80GB",
    "NVIDIA-A100-80GB-PCIE": "A100-80GB",
    "NVIDIA-A100-PCIE-40GB": "A100-40GB",
}

_BY_PRODUCT: dict[str, str] = {v.upper(): k for k, v in PRODUCTS.items()} | {
    k.upper(): v for k, v in _ALIASES.items()
}


def product_label(model: str) -> str:
    """The ``nvidia.com/gpu.product`` value a Node with this canonical model carries."""
    return PRODUCTS.get(model, "NVIDIA-" + re.sub(r"[^A-Za-z0-9.-]+", "-", model))


def canonical_model(product: str) -> str:
    """The canonical model name for a ``nvidia.com/gpu.product`` label (unknown: the label, minus ``NVIDIA-``)."""
    known = _BY_PRODUCT.get(product.upper())
    if known:
        return known
    return product.removeprefix("NVIDIA-")


def product_labels(model: str) -> list[str]:
    """Every ``nvidia.com/gpu.product`` value the table knows for this canonical model, spelled exactly
    (for node affinity, which compares strings exactly: add the spellings observed on the member's Nodes)."""
    out = {product_label(model)}
    out.update(product for product, canonical in _ALIASES.items() if canonical == model)
    return sorted(out)


def known_products() -> dict[str, str]:
    """Every product label in the table (each model's GFD label and every alias) -> its canonical model."""
    return {**{v: k for k, v in PRODUCTS.items()}, **_ALIASES}
