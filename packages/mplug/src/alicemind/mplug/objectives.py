"""mPLUG's objectives: ITC with momentum distillation and queues, ITM with hard negatives (ALBEF's, as the
retrieval model releases them), MLM through text encoder + fusion, and PrefixLM through the decoder; the
retrieval and pre-training models that carry them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from alicemind.core.layers import MaskedLMHead
from alicemind.mplug.model import MPlugOutput, MPlugPreTrainedModel
from alicemind.mplug.modules import sequence_loss


class ContrastiveMixin(MPlugPreTrainedModel):
    """Projections, ITM head, temperature and the momentum queues (``image_queue``, ``text_queue``, ``idx_queue``,
    ``queue_ptr``), with ITC and ITM as in ``model_retrieval_mplug.py``."""

    momentum_parts = ("visual_encoder", "text_encoder", "vision_proj", "text_proj")

    def build_heads(self) -> None:
        c = self.config
        self.vision_proj = nn.Linear(c.hidden_size, c.embed_dim)
        self.text_proj = nn.Linear(c.hidden_size, c.embed_dim)
        self.itm_head = nn.Linear(c.hidden_size, 2)
        self.temp = nn.Parameter(torch.tensor(c.temp))
        self.register_buffer("image_queue", F.normalize(torch.randn(c.embed_dim, c.queue_size), dim=0))
        self.register_buffer("text_queue", F.normalize(torch.randn(c.embed_dim, c.queue_size), dim=0))
        self.register_buffer("idx_queue", torch.full((1, c.queue_size), -100, dtype=torch.long))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    def image_features(self, image: torch.Tensor, *, momentum: bool = False) -> torch.Tensor:
        proj = self.vision_proj_m if momentum else self.vision_proj
        return F.normalize(proj(image[:, 0]), dim=-1)

    def text_features(self, text: torch.Tensor, *, momentum: bool = False) -> torch.Tensor:
        proj = self.text_proj_m if momentum else self.text_proj
        return F.normalize(proj(text[:, 0]), dim=-1)

    @torch.no_grad()
    def _enqueue(self, image_feat: torch.Tensor, text_feat: torch.Tensor, idx: torch.Tensor) -> None:
        size, ptr = self.config.queue_size, int(self.queue_ptr)
        slots = (torch.arange(image_feat.shape[0], device=idx.device) + ptr) % size
        self.image_queue[:, slots] = image_feat.T.to(self.image_queue.dtype)
        self.text_queue[:, slots] = text_feat.T.to(self.text_queue.dtype)
        self.idx_queue[0, slots] = idx
        self.queue_ptr[0] = (ptr + image_feat.shape[0]) % size

    def itc_loss(self, pixel_values, image, text, input_ids, attention_mask, idx, alpha):
        """Image-text contrastive loss with momentum soft targets over the queue; returns (loss, sim_i2t, sim_t2i)."""
        with torch.no_grad():
            self.temp.clamp_(0.001, 0.5)
        image_feat, text_feat = self.image_features(image), self.text_features(text)
        idx = idx.view(-1, 1)
        with torch.no_grad():
            pos = torch.eq(idx, torch.cat([idx.T, self.idx_queue], 1)).float()
            pos = pos / pos.sum(1, keepdim=True)
            if self.config.distill:
                self.momentum_update()
                image_m, _ = self.encode_image(pixel_values, momentum=True)
                text_m = self.encode_text(input_ids, attention_mask, momentum=True)
                image_feat_m = self.image_features(image_m, momentum=True)
                text_feat_m = self.text_features(text_m, momentum=True)
            else:
                image_feat_m, text_feat_m = image_feat.detach(), text_feat.detach()
            image_all = torch.cat([image_feat_m.T, self.image_queue.clone().detach()], 1)
            text_all = torch.cat([text_feat_m.T, self.text_queue.clone().detach()], 1)
            if self.config.distill:
                t_i2t = alpha * F.softmax(image_feat_m @ text_all / self.temp, 1) + (1 - alpha) * pos
                t_t2i = alpha * F.softmax(text_feat_m @ image_all / self.temp, 1) + (1 - alpha) * pos
            else:
                t_i2t = t_t2i = pos
        sim_i2t = image_feat @ text_all / self.temp
        sim_t2i = text_feat @ image_all / self.temp
        loss_i2t = -(F.log_softmax(sim_i2t, 1) * t_i2t).sum(1).mean()
        loss_t2i = -(F.log_softmax(sim_t2i, 1) * t_t2i).sum(1).mean()
        self._enqueue(image_feat_m, text_feat_m, idx.view(-1))
        return (loss_i2t + loss_t2i) / 2, sim_i2t, sim_t2i

    def itm_logits(self, image, image_mask, text, text_mask) -> torch.Tensor:
        """Match logits ``[B, 2]`` from the fused text [CLS]."""
        _, fused_text = self.fusion_encoder(text, text_mask, image, image_mask)
        return self.itm_head(fused_text[:, 0])

    def itm_loss(self, image, image_mask, text, attention_mask, idx, sim_i2t, sim_t2i, generator=None, input_ids=None):
        """Positives plus one hard negative text per image and one image per text, drawn by similarity.

        A negative is never of the same ``idx`` nor, when ``input_ids`` are given, a row with the very same text
        (two images' identical captions would be a "mismatch" no model could tell); a row with no such negative
        in the batch gets none. Returns ``(loss, logits, labels)``."""
        b = image.shape[0]
        with torch.no_grad():
            same = torch.eq(idx.view(-1, 1), idx.view(1, -1))
            if input_ids is not None:
                same |= self.identical_rows(input_ids, attention_mask)
            has_neg = (~same).any(1)
            w_i2t = F.softmax(sim_i2t[:, :b].float(), 1).masked_fill(same, 0) + 1e-9 * (~same)
            w_t2i = F.softmax(sim_t2i[:, :b].float(), 1).masked_fill(same, 0) + 1e-9 * (~same)
            rows = has_neg.nonzero().view(-1)
            neg_text = torch.multinomial(w_i2t[rows], 1, generator=generator).view(-1)
            neg_image = torch.multinomial(w_t2i[rows], 1, generator=generator).view(-1)
        images = torch.cat([image, image[rows], image[neg_image]])
        image_masks = torch.cat([image_mask, image_mask[rows], image_mask[neg_image]])
        texts = torch.cat([text, text[neg_text], text[rows]])
        text_masks = torch.cat([attention_mask, attention_mask[neg_text], attention_mask[rows]])
        logits = self.itm_logits(images, image_masks, texts, text_masks)
        labels = torch.cat([torch.ones(b), torch.zeros(2 * len(rows))]).long().to(logits.device)
        return F.cross_entropy(logits, labels), logits, labels

    @staticmethod
    def identical_rows(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``[B, B]`` True where two rows hold the same tokens (padding ignored)."""
        ids = input_ids.masked_fill(attention_mask == 0, -1)
        return (ids[:, None, :] == ids[None, :, :]).all(-1)


class MPlugForRetrieval(ContrastiveMixin):
    """Image-text retrieval: ITC (top-k candidates) then ITM re-ranking, trained with ITC + ITM."""

    parts = ("visual", "text", "fusion")
    release_task = "retrieval"

    def forward(self, pixel_values, input_ids, attention_mask, idx, *, alpha: float | None = None) -> MPlugOutput:
        alpha = self.config.alpha if alpha is None else alpha
        image, image_mask = self.encode_image(pixel_values)
        text = self.encode_text(input_ids, attention_mask)
        itc, sim_i2t, sim_t2i = self.itc_loss(pixel_values, image, text, input_ids, attention_mask, idx, alpha)
        itm, *_ = self.itm_loss(image, image_mask, text, attention_mask, idx, sim_i2t, sim_t2i, input_ids=input_ids)
        return MPlugOutput(itc + itm, {"itc": itc.detach(), "itm": itm.detach()})


def mask_tokens(input_ids, attention_mask, config, probability: float = 0.15, generator=None):
    """BERT masking of real non-special tokens: 80% [MASK], 10% random, 10% kept; labels -100 elsewhere."""
    ids, labels = input_ids.clone(), input_ids.clone()
    special = (ids == config.bos_token_id) | (ids == config.eos_token_id) | (attention_mask == 0)
    rand = torch.rand(ids.shape, generator=generator)
    chosen = (rand < probability) & ~special
    labels[~chosen] = -100
    action = torch.rand(ids.shape, generator=generator)
    ids[chosen & (action < 0.8)] = config.mask_token_id
    random_rows = chosen & (action >= 0.8) & (action < 0.9)
    ids[random_rows] = torch.randint(config.vocab_size, ids.shape, generator=generator)[random_rows]
    return ids, labels


class MPlugForPreTraining(ContrastiveMixin):
    """ITC + ITM + MLM + PrefixLM on image-text pairs (``pretrain_mplug_*.yaml``: ita/itm/mlm/prefix tasks)."""

    parts = ("visual", "text", "fusion", "decoder")
    release_task = "pretrain"

    def build_heads(self) -> None:
        super().build_heads()
        c = self.config
        self.mlm_head = MaskedLMHead(
            c.hidden_size, c.vocab_size, activation=c.hidden_act, layer_norm_eps=c.layer_norm_eps
        )

    def init_weights(self) -> None:
        super().init_weights()
        self.mlm_head.tie_to(self.text_encoder.embeddings.word_embeddings)

    def forward(
        self,
        pixel_values,
        input_ids,
        attention_mask,
        idx,
        *,
        alpha: float | None = None,
        tasks: tuple[str, ...] = ("itc", "itm", "mlm", "prefix"),
        generator: torch.Generator | None = None,
        prefix_split: torch.Tensor | int | None = None,
    ) -> MPlugOutput:
        """Sum of the selected objectives' losses; ``input_ids`` are ``[CLS] caption [SEP]`` rows.

        ``prefix_split``: PrefixLM's split point, drawn here when None (see :meth:`prefix_loss`); give it as a
        tensor to compile the step as one graph."""
        alpha = self.config.alpha if alpha is None else alpha
        image, image_mask = self.encode_image(pixel_values)
        losses: dict[str, torch.Tensor] = {}
        if "itc" in tasks or "itm" in tasks:
            text = self.encode_text(input_ids, attention_mask)
            itc, s_i2t, s_t2i = self.itc_loss(pixel_values, image, text, input_ids, attention_mask, idx, alpha)
            if "itc" in tasks:
                losses["itc"] = itc
            if "itm" in tasks:
                losses["itm"], *_ = self.itm_loss(
                    image, image_mask, text, attention_mask, idx, s_i2t, s_t2i, generator=generator, input_ids=input_ids
                )
        if "mlm" in tasks:
            masked, labels = mask_tokens(input_ids, attention_mask, self.config, generator=generator)
            text = self.encode_text(masked, attention_mask)
            _, fused = self.fusion_encoder(text, attention_mask, image, image_mask)
            logits = self.mlm_head(fused)
            losses["mlm"] = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten().to(logits.device))
        if "prefix" in tasks:
            losses["prefix"] = self.prefix_loss(image, image_mask, input_ids, attention_mask, generator, prefix_split)
        total = sum(losses.values())
        return MPlugOutput(total, {k: v.detach() for k, v in losses.items()})

    def prefix_loss(
        self, image, image_mask, input_ids, attention_mask, generator=None, split: torch.Tensor | int | None = None
    ) -> torch.Tensor:
        """PrefixLM: the first ``split`` tokens of the caption are encoded and fused with the image; the decoder
        writes the rest (``[CLS]`` + continuation). One split point per batch; ``None`` draws it uniformly from
        ``2 .. shortest row - 2`` (0 when the shortest row is under 4 tokens: [CLS] w [SEP], nothing to split).

        Drawing reads the row lengths on the host and slicing at a host ``int`` makes the split a shape, so a
        compiled training step is given ``split`` as a 0-d tensor instead: then every tensor keeps the batch's width
        ``L`` (the prefix is the caption masked from the split on, the target is gathered to the left and padded),
        the split is a value, and one graph serves every split. Masked positions change no real output, so both
        ways give the same loss."""
        if split is None:
            shortest = int(attention_mask.sum(1).min())
            if shortest < 4:
                return image.new_zeros(())
            split = int(torch.randint(2, shortest - 1, (1,), generator=generator))
        if isinstance(split, int):
            prefix_ids, prefix_mask = input_ids[:, :split], attention_mask[:, :split]
            target = torch.cat([input_ids[:, :1], input_ids[:, split:]], 1)
            target_mask = torch.cat([attention_mask[:, :1], attention_mask[:, split:]], 1)
        else:
            width = input_ids.shape[1]
            positions = torch.arange(width, device=input_ids.device)
            split = split.to(input_ids.device)
            prefix_ids, prefix_mask = input_ids, attention_mask * (positions < split).to(attention_mask.dtype)
            # target[:, 0] = [CLS], target[:, j] = input_ids[:, split + j - 1]; past the row's end: padding.
            source = torch.where(positions == 0, 0, split - 1 + positions)
            inside = source < width
            source = source.clamp(max=width - 1).expand_as(input_ids)
            target_mask = attention_mask.gather(1, source) * inside.to(attention_mask.dtype)
            target = input_ids.gather(1, source).masked_fill(target_mask == 0, self.config.pad_token_id)
        text = self.encode_text(prefix_ids, prefix_mask)
        image_states, text = self.fusion_encoder(text, prefix_mask, image, image_mask)
        states = torch.cat([image_states, text], 1)
        states_mask = torch.cat([image_mask, prefix_mask.long()], 1)
        logits = self.text_decoder(target, target_mask, states, states_mask)
        return sequence_loss(logits, target, target_mask).sum() / target_mask[:, 1:].sum().clamp(min=1)
