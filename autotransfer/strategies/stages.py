"""A backbone's stages, from timm's coarse parameter groups: stem, stages, head.

Partial freezing trains the top N stages; discriminative learning rates decay stage
by stage from the head down. timm's ``group_matcher(coarse=True)`` gives the grouping
for every architecture it has (ResNets, EfficientNets, ViTs, ...).
"""

from __future__ import annotations

import torch
from timm.models import group_parameters


def stage_groups(model: torch.nn.Module) -> list[list[str]]:
    """Parameter names per group, bottom (stem) first, the classifier head last.

    >>> import timm
    >>> groups = stage_groups(timm.create_model("test_resnet", num_classes=3))
    >>> len(groups), groups[-1]
    (6, ['fc.weight', 'fc.bias'])
    """
    if hasattr(model, "group_matcher"):
        grouped = group_parameters(model, model.group_matcher(coarse=True))
        groups = [list(grouped[k]) for k in sorted(grouped)]
    else:  # no grouping known: everything but the classifier, then the classifier
        head = {f"{n}" for n, _ in _classifier_params(model)}
        body = [n for n, _ in model.named_parameters() if n not in head]
        groups = [body, sorted(head)]
    head = {n for n, _ in _classifier_params(model)}
    if head and set(groups[-1]) != head:  # make sure the new head is its own last group
        groups = [[n for n in g if n not in head] for g in groups]
        groups = [g for g in groups if g] + [sorted(head)]
    return groups


def _classifier_params(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if not isinstance(head, torch.nn.Module):
        return []
    ids = {id(p) for p in head.parameters()}
    return [(n, p) for n, p in model.named_parameters() if id(p) in ids]


def modules_of(model: torch.nn.Module, names: set[str]) -> list[torch.nn.Module]:
    """The modules all of whose own parameters are in ``names`` (for freezing BatchNorm)."""
    out = []
    for mod_name, mod in model.named_modules():
        own = [f"{mod_name}.{p}" if mod_name else p for p, _ in mod.named_parameters(recurse=False)]
        if own and all(n in names for n in own):
            out.append(mod)
    return out
