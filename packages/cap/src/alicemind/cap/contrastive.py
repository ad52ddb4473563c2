"""The contrastive term shared by every CAP variant, and the logit distillation term (techniques.md §3.1-3.2)."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from alicemind.cap.bank import RepresentationBank

#: Bank name -> the CapConfig switch that enables it (PrC, SnC, FiC).
BANK_SWITCHES = {"pretrained": "use_prc", "snapshots": "use_snc", "teacher": "use_fic"}


def bank_contrastive_loss(
    query: torch.Tensor,
    idx: torch.Tensor,
    labels: torch.Tensor | None,
    bank_rows: torch.Tensor,
    extra_rows: torch.Tensor,
    extra_idx: torch.Tensor,
    extra_labels: torch.Tensor | None,
    *,
    tau: float,
    w_unsup: float,
    w_sup: float,
) -> torch.Tensor:
    """The loss of one bank, normalised exactly as the original codes it.

    ``query`` [b, H] is the current representation (gradient flows; normalised here), ``bank_rows`` [b, R, H] the
    bank entries of the batch items, ``extra_rows`` [E, R, H] those of E sampled dataset indices. Keys: per item
    [stopgrad(q_i), its R bank rows], then the E*R extra rows. The item's own stopgrad key is masked to -1e6.
    ``L = -w * sum_ij(logp_ij [j positive] / |P(i)|) / count(non-zero masked logp)``, once over same-index
    positives (unsupervised) and, with labels, once over same-label positives (supervised).
    """
    b, r, h = bank_rows.shape
    q = F.normalize(query, p=2, dim=-1)
    rows = bank_rows.to(q.dtype)
    batch_keys = torch.cat([q.detach().unsqueeze(1), rows], dim=1).reshape(b * (r + 1), h)
    keys = torch.cat([batch_keys, extra_rows.to(q.dtype).reshape(-1, h)], dim=0)
    logits = q @ keys.t() / tau
    is_self = torch.zeros(b, keys.shape[0], dtype=torch.bool, device=q.device)
    is_self[torch.arange(b, device=q.device), torch.arange(b, device=q.device) * (r + 1)] = True
    logp = F.log_softmax(logits.masked_fill(is_self, -1e6), dim=-1)

    def term(own: torch.Tensor, batch_values: torch.Tensor, extra_values: torch.Tensor, weight: float) -> torch.Tensor:
        key_values = torch.cat([batch_values.repeat_interleave(r + 1), extra_values.repeat_interleave(r)])
        positive = own.unsqueeze(1) == key_values.unsqueeze(0)
        masked = logp.masked_fill(~positive | is_self, 0.0)
        count = positive.sum(dim=1, keepdim=True) - 1  # the item's own key always matches itself
        return -weight * (masked / count).sum() / (masked != 0).sum()

    idx = idx.to(q.device).long()
    loss = term(idx, idx, extra_idx.to(q.device).long(), w_unsup)
    if labels is not None and extra_labels is not None:
        labels = labels.to(q.device).long()
        loss = loss + term(labels, labels, extra_labels.to(q.device).long(), w_sup)
    return loss


class ContrastiveLoss(nn.Module):
    """Sum of :func:`bank_contrastive_loss` over the enabled banks (PrC, SnC, FiC) of a RepresentationBank.

    The extra examples (``floor(extra_examples / R)`` per bank, drawn without replacement over the whole dataset)
    come from a generator seeded by (seed, call number, bank name), so switching one bank off changes the total
    by exactly that bank's term. A bank not yet filled contributes 0.
    """

    def __init__(
        self,
        *,
        tau: float = 0.1,
        w_unsup: float = 0.3,
        w_sup: float = 3.0,
        extra_examples: int = 4096,
        use_prc: bool = True,
        use_snc: bool = True,
        use_fic: bool = True,
        supervised: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.tau, self.w_unsup, self.w_sup, self.extra_examples = tau, w_unsup, w_sup, extra_examples
        self.enabled = {"pretrained": use_prc, "snapshots": use_snc, "teacher": use_fic}
        self.supervised, self.seed, self.calls = supervised, seed, 0

    @classmethod
    def from_config(cls, config) -> ContrastiveLoss:
        return cls(
            tau=config.tau, w_unsup=config.w_unsup, w_sup=config.w_sup, extra_examples=config.extra_examples,
            use_prc=config.use_prc, use_snc=config.use_snc, use_fic=config.use_fic, supervised=config.supervised,
            seed=config.seed,
        )  # fmt: skip

    def sample_extra(self, num_examples: int, width: int, name: str, call: Any) -> list[int]:
        """The extra dataset indices of one bank at one call (python ``random.sample``, as the original)."""
        count = min(num_examples, self.extra_examples // max(width, 1))
        return random.Random(f"{self.seed}-{call}-{name}").sample(range(num_examples), k=count)

    def terms(
        self,
        query: torch.Tensor,
        idx: torch.Tensor,
        labels: torch.Tensor | None,
        bank: RepresentationBank,
        call: Any = None,
    ) -> dict[str, torch.Tensor]:
        """Each enabled, filled bank's term. ``call`` names the draw (default: the call count); the trainer hooks
        pass the batch's position in training, so a resumed run draws the same extra examples."""
        call = self.calls if call is None else call
        out: dict[str, torch.Tensor] = {}
        for name, on in self.enabled.items():
            rows = bank.rows(name, idx) if on else None
            if rows is None:
                continue
            extra = torch.tensor(self.sample_extra(bank.num_examples, rows.shape[1], name, call), dtype=torch.long)
            use_labels = self.supervised and labels is not None and bank.has_labels
            out[name] = bank_contrastive_loss(
                query, idx, labels if use_labels else None, rows, bank.rows(name, extra), extra,
                bank.labels[extra] if use_labels else None, tau=self.tau, w_unsup=self.w_unsup, w_sup=self.w_sup,
            )  # fmt: skip
        return out

    def forward(
        self,
        query: torch.Tensor,
        idx: torch.Tensor,
        labels: torch.Tensor | None,
        bank: RepresentationBank,
        call: Any = None,
    ) -> torch.Tensor:
        terms = self.terms(query, idx, labels, bank, call)
        self.calls += 1
        if not terms:
            return query.new_zeros(())
        return torch.stack(list(terms.values())).sum()


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher/T) || softmax(student/T))``, batch mean (both CAP codes)."""
    if student_logits.shape[-1] != teacher_logits.shape[-1]:
        raise ValueError(
            f"the teacher gives {teacher_logits.shape[-1]} labels and the student {student_logits.shape[-1]}: "
            "the teacher must be fine-tuned on the same task"
        )
    t = temperature
    log_student = F.log_softmax(student_logits / t, dim=-1)
    target = F.softmax(teacher_logits / t, dim=-1)
    return F.kl_div(log_student, target, reduction="batchmean") * t * t
