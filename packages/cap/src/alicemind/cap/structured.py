"""CAP-f: head and FFN-neuron gating, first-order importance and the original's selection rules (§3.3)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from alicemind.cap.adapters import EncoderAdapter, LayerHandles, find_adapter
from alicemind.cap.config import check_sparsity


def pruning_counts(sparsities: Iterable[float], total: int) -> list[int]:
    """Cumulative counts ``int(total * percent / 100)`` for each sparsity (the original works in percent)."""
    return [int(total * round(check_sparsity(s) * 100, 9) / 100) for s in sparsities]


def select_heads(
    scores: torch.Tensor, n_to_prune: int, old_mask: torch.Tensor, at_least_per_layer: int = 1
) -> torch.Tensor:
    """New head mask [L, H]: the ``n_to_prune`` lowest-scoring heads still active, after protecting each layer's
    ``at_least_per_layer`` highest-scoring heads (chosen among all heads, pruned ones included, as the original)."""
    layers, heads = scores.shape
    order = sorted(((li, h) for li in range(layers) for h in range(heads)), key=lambda lh: float(scores[lh]))
    protected: set[tuple[int, int]] = set()
    taken = dict.fromkeys(range(layers), 0)
    for li, h in reversed(order):
        if taken[li] < at_least_per_layer:
            taken[li] += 1
            protected.add((li, h))
    candidates = [lh for lh in order if lh not in protected and old_mask[lh] != 0]
    new = old_mask.clone()
    for lh in candidates[:n_to_prune]:
        new[lh] = 0
    return new


def select_neurons(scores: torch.Tensor, n_to_prune: int, old_mask: torch.Tensor) -> torch.Tensor:
    """New FFN mask [L, I]: the ``n_to_prune`` lowest-scoring active neurons, global over layers, no protection."""
    flat_scores, flat_old = scores.flatten(), old_mask.flatten()
    active = (flat_old != 0).nonzero().flatten()
    # a stable sort keeps the original's (layer, neuron) order among equal scores
    order = active[torch.sort(flat_scores[active], stable=True).indices]
    new = flat_old.clone()
    new[order[:n_to_prune]] = 0
    return new.view_as(old_mask)


class StructuredPruner:
    """Gates heads and FFN neurons of any adapted model with masks [L, H] and [L, I] (1 = keep).

    A head is gated by scaling its slice of the attention output projection's input (its context vector), a
    neuron by scaling the FFN output projection's input; this is independent of any ``head_mask`` support.
    """

    def __init__(self, model: nn.Module, adapter: EncoderAdapter | None = None) -> None:
        self.model = model
        self.adapter = find_adapter(model, adapter)
        self.layers: list[LayerHandles] = self.adapter.layers(model)
        heads = {h.num_heads for h in self.layers}
        inter = {h.intermediate_size for h in self.layers}
        if len(heads) != 1 or len(inter) != 1:
            raise ValueError("StructuredPruner needs every layer to start with the same head and FFN sizes")
        ref = next(model.parameters())
        self.head_mask = torch.ones(len(self.layers), heads.pop(), device=ref.device, dtype=ref.dtype)
        self.neuron_mask = torch.ones(len(self.layers), inter.pop(), device=ref.device, dtype=ref.dtype)
        self._gates: tuple[torch.Tensor, torch.Tensor] = (self.head_mask, self.neuron_mask)
        self._hooks = []
        for i, handles in enumerate(self.layers):
            self._hooks.append(handles.attn_out.register_forward_pre_hook(self._head_gate(i, handles.head_dim)))
            self._hooks.append(handles.ffn_out.register_forward_pre_hook(self._neuron_gate(i)))

    def _head_gate(self, layer: int, head_dim: int):
        def hook(module: nn.Module, args: tuple[Any, ...]):
            gate = self._gates[0][layer].to(args[0].dtype).repeat_interleave(head_dim)
            return (args[0] * gate, *args[1:])

        return hook

    def _neuron_gate(self, layer: int):
        def hook(module: nn.Module, args: tuple[Any, ...]):
            return (args[0] * self._gates[1][layer].to(args[0].dtype), *args[1:])

        return hook

    # -- masks --------------------------------------------------------------------------------------------------
    @property
    def total_heads(self) -> int:
        return self.head_mask.numel()

    @property
    def total_neurons(self) -> int:
        return self.neuron_mask.numel()

    def apply(self, head_mask: torch.Tensor, neuron_mask: torch.Tensor) -> None:
        """Set new masks (copied in place)."""
        self.head_mask.copy_(head_mask)
        self.neuron_mask.copy_(neuron_mask)

    def sparsity(self) -> dict[str, float]:
        return {
            "heads": 1.0 - float(self.head_mask.mean()),
            "neurons": 1.0 - float(self.neuron_mask.mean()),
        }

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"head_mask": self.head_mask.cpu().clone(), "neuron_mask": self.neuron_mask.cpu().clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for key, mask in (("head_mask", self.head_mask), ("neuron_mask", self.neuron_mask)):
            if key not in state or tuple(state[key].shape) != tuple(mask.shape):
                raise ValueError(f"saved CAP masks lack {key} of shape {tuple(mask.shape)}")
            mask.copy_(state[key])

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()

    # -- importance and selection ---------------------------------------------------------------------------------
    def compute_importance(
        self,
        batches: Iterable[Any],
        loss_fn: Callable[[nn.Module, Any], torch.Tensor],
        *,
        normalize_by_layer: bool = True,
        progress: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sum over ``batches`` of |dL/d head_mask| and |dL/d neuron_mask| (eval mode), L2-normalised per layer.

        The masks are cloned as leaf tensors that require grad, as the original; model gradients are zeroed after
        each batch and the model's mode is restored.
        """
        from tqdm.auto import tqdm

        was_training = self.model.training
        self.model.eval()
        head = self.head_mask.clone().requires_grad_(True)
        neuron = self.neuron_mask.clone().requires_grad_(True)
        head_scores, neuron_scores = torch.zeros_like(self.head_mask), torch.zeros_like(self.neuron_mask)
        self._gates = (head, neuron)
        try:
            for batch in tqdm(batches, desc="CAP importance", disable=not progress, leave=False):
                loss = loss_fn(self.model, batch)
                loss.backward()
                head_scores += head.grad.abs().detach()
                neuron_scores += neuron.grad.abs().detach()
                head.grad = None
                neuron.grad = None
                self.model.zero_grad(set_to_none=True)
        finally:
            self._gates = (self.head_mask, self.neuron_mask)
            self.model.train(was_training)
        if normalize_by_layer:
            head_scores = head_scores / (head_scores.pow(2).sum(-1, keepdim=True).sqrt() + 1e-20)
            neuron_scores = neuron_scores / (neuron_scores.pow(2).sum(-1, keepdim=True).sqrt() + 1e-20)
        return head_scores, neuron_scores

    def prune_to(
        self, sparsity: float, head_scores: torch.Tensor, neuron_scores: torch.Tensor, at_least_heads_per_layer: int = 1
    ) -> None:
        """Mask down to ``sparsity`` of the heads and of the neurons (cumulative, as the original's sequence)."""
        target_heads, target_neurons = (
            pruning_counts([sparsity], self.total_heads)[0],
            pruning_counts([sparsity], self.total_neurons)[0],
        )
        if at_least_heads_per_layer and target_heads > self.total_heads - at_least_heads_per_layer * len(self.layers):
            raise ValueError(
                f"sparsity {sparsity} prunes {target_heads} of {self.total_heads} heads, leaving fewer than "
                f"{at_least_heads_per_layer} per layer"
            )
        pruned_heads = int((self.head_mask == 0).sum())
        pruned_neurons = int((self.neuron_mask == 0).sum())
        heads = select_heads(head_scores, max(0, target_heads - pruned_heads), self.head_mask, at_least_heads_per_layer)
        neurons = select_neurons(neuron_scores, max(0, target_neurons - pruned_neurons), self.neuron_mask)
        self.apply(heads, neurons)
