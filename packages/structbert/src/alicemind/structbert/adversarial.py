"""Embedding-space adversarial fine-tuning, as sofa's ``Sbert*`` heads do it (off by default here).

Per micro-batch: perturb the *word* embeddings (before position/type embeddings are added) with N(0, sigma)
noise, measure the symmetric KL between clean and noisy logits, step the noise along that KL's gradient
normalised by its per-example infinity norm (``adv_grad_factor``), clip that step to ``±adv_bound`` around the noisy point, run
again and add the symmetric KL between clean and adversarial logits to the loss. About 3 forward passes a step.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from alicemind.core.training import TrainerCallback


def symmetric_kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(p||q) + KL(q||p), summed over classes, averaged over rows, divided by the number of classes."""
    p, q = F.log_softmax(p_logits.float(), -1), F.log_softmax(q_logits.float(), -1)
    kl = (p.exp() * (p - q)).sum(-1) + (q.exp() * (q - p)).sum(-1)
    return kl.mean() / p_logits.shape[-1]


def _per_head(logits: Any, task_ids: torch.Tensor | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(rows, logits of those rows) for every classification head (regression heads have no distribution)."""
    heads = logits if isinstance(logits, list) else [logits]
    n = heads[0].shape[0]
    out = []
    for task, head in enumerate(heads):
        if head.shape[-1] < 2:
            continue
        rows = torch.ones(n, dtype=torch.bool, device=head.device) if task_ids is None else task_ids == task
        if bool(rows.any()):
            out.append((rows, head))
    return out


def adversarial_divergence(clean: Any, other: Any, task_ids: torch.Tensor | None) -> torch.Tensor:
    """Symmetric KL between two outputs of a (multi-head) classifier, each row under its own head."""
    total, rows_seen = None, 0
    for (rows, a), (_, b) in zip(_per_head(clean, task_ids), _per_head(other, task_ids)):
        term = symmetric_kl(a[rows], b[rows]) * int(rows.sum())
        total = term if total is None else total + term
        rows_seen += int(rows.sum())
    if total is None:
        return torch.zeros((), device=(clean[0] if isinstance(clean, list) else clean).device)
    return total / rows_seen


class AdversarialCallback(TrainerCallback):
    """Adds sofa's adversarial term to the task loss (``extra_loss``) of a StructBERT sequence classifier.

    Defaults are sofa's config values: ``sigma=5e-6``, ``adv_grad_factor=5e-5``, ``adv_bound=2*sigma``. A
    non-finite term is dropped (the plain loss is used), as sofa's NaN guard does.
    """

    def __init__(self, sigma: float = 5e-6, adv_grad_factor: float = 5e-5, adv_bound: float | None = None) -> None:
        if sigma <= 0 or adv_grad_factor <= 0:
            raise ValueError(f"sigma and adv_grad_factor must be > 0, got {sigma} and {adv_grad_factor}")
        self.sigma = float(sigma)
        self.adv_grad_factor = float(adv_grad_factor)
        self.adv_bound = float(adv_bound) if adv_bound is not None else 2 * self.sigma
        self.last_value: float | None = None

    def extra_loss(self, trainer: Any, batch: Any, outputs: Any) -> torch.Tensor | None:
        return self.compute(trainer.model, batch, outputs.logits)

    def compute(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], clean_logits: Any) -> torch.Tensor:
        """The adversarial term for one batch given the clean logits (still attached to the graph)."""
        inputs = {k: batch[k] for k in ("attention_mask", "token_type_ids") if k in batch}
        task_ids = batch.get("task_ids")
        embeds = model.bert.embeddings.word_embeddings(batch["input_ids"])
        noise = torch.randn_like(embeds) * self.sigma
        noisy = (embeds.detach() + noise).requires_grad_(True)
        noisy_logits = model(None, inputs_embeds=noisy, **inputs).logits
        divergence = adversarial_divergence([c.detach() for c in _as_list(clean_logits)], noisy_logits, task_ids)
        (grad,) = torch.autograd.grad(divergence, noisy, allow_unused=True)
        if grad is None or not torch.isfinite(grad).all():
            self.last_value = None
            return None
        # Per-example infinity norm: max |g| over hidden, then over tokens.
        norm = grad.abs().amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)
        delta = (self.adv_grad_factor * grad / norm).clamp(-self.adv_bound, self.adv_bound)  # around the noisy point
        # Attached to the embedding matrix, so the smoothness term trains the embeddings too.
        adversarial = embeds + (noise + delta).detach()
        adv_logits = model(None, inputs_embeds=adversarial, **inputs).logits
        term = adversarial_divergence(clean_logits, adv_logits, task_ids)
        if not torch.isfinite(term):
            self.last_value = None
            return None
        self.last_value = float(term.detach())
        return term


def _as_list(logits: Any) -> Any:
    return logits if isinstance(logits, list) else [logits]
