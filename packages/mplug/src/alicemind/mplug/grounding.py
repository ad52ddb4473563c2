"""Visual grounding (RefCOCO/+/g): the box is decoded as 4 bin tokens after ``[unused339]``, with the decoder's
logits restricted to the 337 bin tokens (``bbox_prob_mask``); accuracy at IoU >= 0.5."""

from __future__ import annotations

import torch

from alicemind.mplug.model import MPlugOutput, MPlugPreTrainedModel
from alicemind.mplug.modules import ConditionedDecoder
from alicemind.mplug.processor import GROUNDING_BINS


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of matching rows of two ``[N, 4]`` ``(x1, y1, x2, y2)`` box tensors."""
    lt, rb = torch.maximum(a[:, :2], b[:, :2]), torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    area = lambda t: (t[:, 2:] - t[:, :2]).clamp(min=0).prod(1)  # noqa: E731
    return inter / (area(a) + area(b) - inter).clamp(min=1e-9)


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

    def _masked(self, logits: torch.Tensor) -> torch.Tensor:
        allowed = torch.full_like(logits, float("-inf"))
        allowed[..., self.bin_token_ids.to(logits.device)] = 0
        return logits + allowed

    def forward(self, pixel_values, text_ids, text_mask, box_token_ids) -> MPlugOutput:
        """``box_token_ids`` ``[B, 4]``: CE of each bin token given the prefix, over the bin tokens only."""
        states, mask = self.fuse(pixel_values, text_ids, text_mask)
        prefix = torch.full_like(box_token_ids[:, :1], self.prefix_token_id)
        ids = torch.cat([prefix, box_token_ids], 1)
        logits = self._masked(self.text_decoder(ids, torch.ones_like(ids), states, mask))[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2).float(), box_token_ids)
        return MPlugOutput(loss, {"grounding": loss.detach()}, logits)

    @torch.no_grad()
    def predict_bins(self, pixel_values, text_ids, text_mask) -> torch.Tensor:
        """Greedy 4-token decode restricted to the bins (as released); returns bin indices ``[B, 4]``."""
        states, mask = self.fuse(pixel_values, text_ids, text_mask)
        adapter = ConditionedDecoder(self.text_decoder, states, mask)
        cache = adapter.init_decoder_cache(states, mask, 5)
        token = torch.full((states.shape[0], 1), self.prefix_token_id, device=states.device)
        out = []
        for _ in range(4):
            logits = self._masked(adapter.decode_step(token, cache)[:, -1])
            token = logits.argmax(-1, keepdim=True)
            out.append(token)
        ids = torch.cat(out, 1)
        lookup = {int(t): i for i, t in enumerate(self.bin_token_ids)}
        return torch.tensor([[lookup[int(t)] for t in row] for row in ids])
