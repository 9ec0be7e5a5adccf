"""Inference-only rewrites of a trained network that change its speed, not its outputs.

* :func:`fold_batch_norms` folds every eval-mode batch norm into the convolution that feeds
  it: BN(conv(x)) = conv'(x) with W' = W·γ/σ and b' = (b − μ)·γ/σ + β, σ = √(var + ε).  Exact
  in eval mode up to float reassociation (the running statistics are constants there); the
  batch norms were 8–15 % of the CPU profile of ResNet-50's CAM inference
  (``docs/fidelity.md``, CAM inference: inference speed).
* :func:`prepare_for_inference` adds the channels_last memory format, which the CPU
  (oneDNN) and CUDA (cuDNN) convolutions run faster in; IRN's numpy preprocessing hands its
  network channels_last-strided input by accident (``docs/fidelity.md``).
* :func:`retained_heap` keeps freed activation buffers in the process's heap while CAMs
  are computed, instead of glibc's fresh ``mmap`` (and page faults) for each of them.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
from collections.abc import Iterator

import torch
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.utils.fusion import fuse_conv_bn_eval

log = logging.getLogger(__name__)


def foldable_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(conv, batch norm) module names where the BN's only input is the conv's output and the
    conv's output goes nowhere else, each module called once: the pairs that
    :func:`fold_batch_norms` may fold.  Found on the traced dataflow (``torch.fx``), so a
    module order that is not the call order cannot fool it; a model that cannot be traced
    has none."""
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as exc:  # fx raises many types on untraceable Python control flow
        log.info("BN folding skipped: %s cannot be traced (%s)", type(model).__name__, exc)
        return []
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], _BatchNorm):
            continue
        bn = modules[node.target]
        source = node.args[0] if node.args else None
        if (isinstance(source, fx.Node) and source.op == "call_module"
                and isinstance(modules[source.target], _ConvNd)
                and not modules[source.target].transposed
                and bn.running_mean is not None and len(node.args) == 1
                and len(source.users) == 1
                and calls[source.target] == 1 and calls[node.target] == 1):
            pairs.append((source.target, node.target))
    return pairs


def fold_batch_norms(model: nn.Module) -> int:
    """Fold every foldable eval-mode batch norm of ``model`` into its convolution, in place.

    Each folded conv gets the BN's affine map in its weight and bias and the BN becomes
    ``nn.Identity``, names kept.  Returns the number folded (0 leaves the model as it was).
    Inference only: the model must be in eval mode, since in training a batch norm
    normalises with the batch's statistics, which no fixed weight can hold, and a folded
    model cannot be trained back.
    """
    if model.training:
        raise ValueError("fold_batch_norms needs a model in eval mode (model.eval())")
    pairs = foldable_pairs(model)
    for conv_name, bn_name in pairs:
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        _replace(model, conv_name, fuse_conv_bn_eval(conv, bn))
        _replace(model, bn_name, nn.Identity())
    return len(pairs)


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def prepare_for_inference(model: nn.Module, fold: bool = True) -> nn.Module:
    """``model`` made fast for inference in place and returned: batch norms folded
    (``fold``; outputs unchanged up to float rounding) and weights in channels_last.

    A gradient-based CAM source must not fold: it reads the activations and gradients of
    named convolutions, and a folded conv's output is the BN's.  channels_last keeps every
    value and gradient (only the memory layout differs), so those sources may take it.
    """
    if fold:
        log.info("folded %d batch norms into their convolutions", fold_batch_norms(model))
    return model.to(memory_format=torch.channels_last)


# glibc's mallopt parameters and their defaults (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536


@contextlib.contextmanager
def retained_heap() -> Iterator[None]:
    """Inside the block, freed memory stays in the process's heap for the next allocation.

    glibc serves every large buffer (the activations) with a fresh ``mmap`` and unmaps it
    when freed, so each forward pass faults its activations in again and the kernel zeroes
    them: measured with ResNet-50 at 4 scales × flip on 500×375 images, 0.25–0.65 M minor
    faults and 0.4–1.2 s of system time per image, growing with the batch — what made
    batching large images slower than one at a time on a CPU.  With ``mmap`` off and the
    trim threshold at its maximum the buffers are reused (under 0.03 M faults per image).
    On exit glibc's defaults come back and the heap is trimmed.  A no-op without glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        yield
        return
    libc.mallopt(_M_MMAP_MAX, 0)
    libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    try:
        yield
    finally:
        libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
        libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
        libc.malloc_trim(0)
