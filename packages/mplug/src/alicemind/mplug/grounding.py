"""Visual grounding (RefCOCO/+/g): the box is decoded as 4 bin tokens after ``[unused339]``, with the decoder's
logits restricted to the 337 bin tokens (``bbox_prob_mask``); accuracy at IoU >= 0.5."""

from __future__ import annotations

import torch

from alicemind.mplug.model import MPlugOutput, MPlugPreTrainedModel
from alicemind.mplug.processor import GROUNDING_BINS


def _intersection_union(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    lt, rb = torch.maximum(a[:, :2], b[:, :2]), torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    area = lambda t: (t[:, 2:] - t[:, :2]).clamp(min=0).prod(1)  # noqa: E731
    return inter, area(a) + area(b) - inter


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of matching rows of two ``[N, 4]`` ``(x1, y1, x2, y2)`` box tensors."""
    inter, union = _intersection_union(a, b)
    return inter / union.clamp(min=1e-9)


def cxcywh_to_corners(box: torch.Tensor) -> torch.Tensor:
    """``[N, 4]`` ``(cx, cy, w, h)`` -> ``(x1, y1, x2, y2)``."""
    cx, cy, w, h = box.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def generalized_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """GIoU of matching rows of two ``[N, 4]`` corner box tensors: IoU minus the share of the enclosing box that
    neither covers (the diagonal of the release's pairwise ``generalized_box_iou``)."""
    inter, union = _intersection_union(a, b)
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).clamp(min=0).prod(1)
    return inter / union.clamp(min=1e-9) - (hull - union) / hull.clamp(min=1e-9)


class MPlugForGrounding(MPlugPreTrainedModel):
    """Referring-expression grounding over the fused ``[image; expression]``; no momentum copies (errata §7).

    ``bin_token_ids`` are the vocabulary ids of ``[unused340]..[unused676]`` and ``prefix_token_id`` that of
    ``[unused339]`` (set from the tokenizer, since the tiny test vocabularies differ from BERT's)."""

    release_task = "grounding"

    def set_box_vocabulary(self, prefix_token_id: int, bin_token_ids: list[int]) -> None:
        if len(bin_token_ids) != GROUNDING_BINS:
            raise ValueError(f"expected {GROUNDING_BINS} bin token ids, got {len(bin_token_ids)}")
        self.prefix_token_id = prefix_token_id
        self.bin_token_ids = torch.tensor(bin_token_ids)
        # vocabulary id -> bin index (-1 elsewhere), built once here: sizing it in the forward from the largest
        # id would read a tensor value on the host, which breaks a compiled graph.
        self.bin_lookup = torch.full((int(self.bin_token_ids.max()) + 1,), -1, dtype=torch.long)
        self.bin_lookup[self.bin_token_ids] = torch.arange(GROUNDING_BINS)

    def _masked(self, logits: torch.Tensor) -> torch.Tensor:
        allowed = torch.full_like(logits, float("-inf"))
        allowed[..., self.bin_token_ids.to(logits.device)] = 0
        return logits + allowed

    def forward(self, pixel_values, text_ids, text_mask, box_token_ids, box_targets=None) -> MPlugOutput:
        """``box_token_ids`` ``[B, 4]``: CE of each bin token given the prefix, over the bin tokens only.

        With ``box_targets`` (``[B, 4]`` normalised ``cx, cy, w, h``, as the collator gives them) each token's CE
        is weighted as ``model_grounding_mplug.py`` does (``weight_decoder``, always on there): by the L1 distance
        of the argmax box's coordinate to the target's (clamped to 0..5) and by ``1 - GIoU`` of the two boxes."""
        states, mask = self.fuse(pixel_values, text_ids, text_mask)
        prefix = torch.full_like(box_token_ids[:, :1], self.prefix_token_id)
        ids = torch.cat([prefix, box_token_ids], 1)
        logits = self._masked(self.text_decoder(ids, torch.ones_like(ids), states, mask))[:, :-1]
        ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2).float(), box_token_ids, reduction="none")
        if box_targets is not None:
            with torch.no_grad():
                predicted = self._bin_index(logits.argmax(-1)).float() / (GROUNDING_BINS - 1)
                targets = box_targets.to(predicted)
                weight_l1 = (predicted - targets).abs().clamp(0, 5)
                weight_giou = 1 - generalized_box_iou(cxcywh_to_corners(predicted), cxcywh_to_corners(targets))
            ce = ce * weight_l1 * weight_giou[:, None]
        loss = ce.mean()
        return MPlugOutput(loss, {"grounding": loss.detach()}, logits)

    def _bin_index(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Vocabulary ids of bin tokens -> their bin indices (0..336)."""
        return self.bin_lookup.to(token_ids.device)[token_ids]

    @torch.no_grad()
    def predict_bins(self, pixel_values, text_ids, text_mask) -> torch.Tensor:
        """Greedy 4-token decode restricted to the bins (as released); returns bin indices ``[B, 4]``."""
        states, mask = self.fuse(pixel_values, text_ids, text_mask)
        adapter = self.decoding_adapter(states, mask)
        cache = adapter.init_decoder_cache(states, mask, 5, static=adapter.prefers_static_cache)
        token = torch.full((states.shape[0], 1), self.prefix_token_id, device=states.device)
        out = []
        for _ in range(4):
            logits = self._masked(adapter.decode_step(token, cache)[:, -1])
            token = logits.argmax(-1, keepdim=True)
            out.append(token)
        return self._bin_index(torch.cat(out, 1))
