"""Official checkpoint layouts (tests/projects/data/*_official_state_dict.json) as test fixtures.

Each JSON maps every parameter name of a method's released checkpoint to its shape, derived from the
official code and config (a copy of shared/reference/checkpoints/). A test writes a file in the
official format from it, with a distinct random tensor under every name, loads it through our
loader, and checks the layout contract: every official tensor reaches our model, and every
parameter and buffer of ours comes from the file. The check matches tensors by value, not by name,
so it does not depend on our own name mapping.
"""

import json
import os
import pickle
from typing import Dict, Iterable, Optional, Tuple

import torch

DATA = os.path.join(os.path.dirname(__file__), "data")


def official_layout(name: str, variant: Optional[str] = None) -> Dict[str, tuple]:
    """{parameter name: shape} of the official checkpoint ``name`` (e.g. "visolo"). Files in the
    shared reference format (``params`` next to ``source``, ``variants``) give ``params``, or those
    of ``variant`` (e.g. ``tevit`` variant ``tevit_r50``)."""
    with open(os.path.join(DATA, f"{name}_official_state_dict.json")) as f:
        data = json.load(f)
    if "params" in data:
        data = data["variants"][variant]["params"] if variant else data["params"]
    elif variant:
        raise KeyError(f"official_layout: {name} has no variants (asked for {variant!r})")
    return {k: tuple(v) for k, v in data.items()}


def random_state_dict(
    layout: Dict[str, tuple], aliases: Optional[Dict[str, str]] = None, seed: int = 0
) -> Dict[str, torch.Tensor]:
    """A distinct random tensor of the right shape under every name of ``layout``.

    Args:
        aliases: {prefix: prefix} of names that hold the same tensors as another module's in the
            official file (e.g. VISOLO's ``tracking_module.`` = ``model.Tracking_branch.``).
    """
    g = torch.Generator().manual_seed(seed)
    sd = {k: torch.rand(shape, generator=g) + 0.5 for k, shape in layout.items()}
    for alias, target in (aliases or {}).items():
        for k in sd:
            if k.startswith(alias):
                sd[k] = sd[target + k[len(alias) :]]
    return sd


def write_checkpoint(state: Dict[str, torch.Tensor], path: str, fmt: str) -> str:
    """The file formats of the releases: "pth" (torch.save({"model": ...})), "pkl" (detectron2's
    model zoo: numpy arrays under "model"), "mmcv" (torch.save({"state_dict": ..., "meta": ...})).
    """
    if fmt == "pth":
        torch.save({"model": state}, path)
    elif fmt == "pkl":
        with open(path, "wb") as f:
            pickle.dump(
                {"model": {k: v.numpy() for k, v in state.items()}, "__author__": "FAIR"}, f
            )
    elif fmt == "mmcv":
        torch.save({"state_dict": state, "meta": {}}, path)
    else:
        raise ValueError(f"unknown checkpoint format {fmt!r}")
    return path


def _fingerprint(t: torch.Tensor) -> tuple:
    flat = t.detach().float().flatten()
    return tuple(t.shape) + tuple(round(v, 6) for v in flat[:6].tolist())


def match_by_value(
    model: torch.nn.Module,
    official: Dict[str, torch.Tensor],
    ignore_ours: Iterable[str] = ("num_batches_tracked",),
) -> Tuple[list, list, int]:
    """Which tensors of ``model`` hold a tensor of ``official`` (matched by value, not by name).

    Returns (our tensor names not from the file, official names that reached none of ours, the
    number of our tensors).
    """
    by_value = {}
    for k, v in official.items():
        by_value.setdefault(_fingerprint(v), []).append(k)
    reached = set()
    not_from_file = []
    ours = model.state_dict()
    for name, value in ours.items():
        if any(name.endswith(s) for s in ignore_ours):
            continue
        keys = by_value.get(_fingerprint(value))
        if keys is None or not torch.equal(value.float(), official[keys[0]].float()):
            not_from_file.append(name)
            continue
        reached.update(keys)
    return not_from_file, sorted(set(official) - reached), len(ours)


def assert_loaded_whole(
    model: torch.nn.Module,
    official: Dict[str, torch.Tensor],
    ignore_ours: Iterable[str] = ("num_batches_tracked",),
) -> int:
    """Every official tensor reached ``model`` and every tensor of ``model`` came from ``official``.

    Returns the number of our tensors matched.
    """
    not_from_file, missing, n = match_by_value(model, official, ignore_ours)
    assert (
        not not_from_file
    ), f"{len(not_from_file)} tensors of ours not from the file: {not_from_file[:5]}"
    assert (
        not missing
    ), f"{len(missing)} official tensors reached no parameter of ours: {missing[:5]}"
    return n


def check_official_file(
    name: str, cfg_with_weights, path: str, fmt: str, aliases=None, seed: int = 0
) -> Tuple[int, int]:
    """Write the official layout ``name`` as a ``fmt`` file at ``path``, build our model from
    ``cfg_with_weights(path)`` (a config whose MODEL.WEIGHTS is that file), load the weights as
    ``--eval-only`` does, and check that they loaded whole.

    Returns (official entries, tensors of ours matched).
    """
    from detectron2.modeling import build_model

    from vis_core.engine import load_inference_weights

    layout = official_layout(name)
    state = random_state_dict(layout, aliases=aliases, seed=seed)
    cfg = cfg_with_weights(write_checkpoint(state, path, fmt))
    model = build_model(cfg)
    load_inference_weights(model, cfg.MODEL.WEIGHTS)
    return len(layout), assert_loaded_whole(model, state)


def load_pretraining_layout(
    name: str, model: torch.nn.Module, path: str, keep, class_markers, seed: int = 0
) -> Tuple[list, list, list]:
    """The checkpoint an official training starts from, as the layout ``name`` reduced to the names
    ``keep(name)`` accepts, with 80 classes in the layers whose names contain one of
    ``class_markers``: written as an mmcv file at ``path`` and loaded into ``model`` as training
    starts (detectron2's checkpointer, shape mismatches skipped).

    Returns (our tensor names not from the file, file names that reached none of ours, the class
    layers' names), each sorted.
    """
    from vis_core.engine.checkpoint import VideoCheckpointer

    def is_class(k):
        return any(c in k for c in class_markers)

    layout = {
        k: ((80,) + tuple(s[1:]) if is_class(k) else tuple(s))
        for k, s in official_layout(name).items()
        if keep(k)
    }
    state = random_state_dict(layout, seed=seed)
    VideoCheckpointer(model).resume_or_load(write_checkpoint(state, path, "mmcv"), resume=False)
    weights = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    not_from_file, not_reached, _ = match_by_value(model, weights)
    return sorted(not_from_file), sorted(not_reached), sorted(k for k in layout if is_class(k))
