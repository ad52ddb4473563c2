"""What a model must expose for :func:`alicemind.core.generation.generate` to decode with it."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import LongTensor, Tensor


@runtime_checkable
class EncoderDecoderLM(Protocol):
    """An encoder-decoder that decodes incrementally with a cache it owns.

    The engine never looks inside the cache: it only passes it back to ``decode_step`` and ``reorder_cache``.
    Row ``i`` of the cache always belongs to row ``i`` of the next ``decode_step`` input.
    The engine calls these under ``torch.no_grad()``; putting the model in eval mode is the caller's job.
    A model whose decoder has a fixed number of positions may also expose ``max_decoder_positions`` (an int);
    the engine then refuses, before any work, a prompt plus ``max_new_tokens`` that would not fit.
    """

    def encode(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Encode a padded source batch ``[B, S]`` (``attention_mask`` 1 = real token) into states ``[B, S, H]``."""
        ...

    def init_decoder_cache(self, encoder_hidden: Tensor, encoder_mask: Tensor, max_length: int) -> Any:
        """Build the decoder cache for ``B`` rows.

        It holds the per-layer self-attention key/value cache with room for ``max_length`` decoder positions
        (prompt plus generated tokens) and the cross-attention keys/values, computed ONCE here from
        ``encoder_hidden`` ``[B, S, H]``. ``encoder_mask`` is ``[B, S]`` with 1 = real token.
        A model may also accept ``static=True``: fixed ``max_length`` buffers written at a position kept as a
        tensor, so every later ``decode_step`` has the same shapes (one compiled graph). The engine then keeps
        every row in every step and reorders rows only within each source's group after the first expansion.
        """
        ...

    def decode_step(self, decoder_input_ids: Tensor, cache: Any) -> Tensor:
        """Run the decoder on new tokens and append their keys/values to ``cache`` in place.

        ``decoder_input_ids`` is ``[B, T_new]``: the whole decoder prompt on the first call, then one token per
        call. Positions continue from what the cache already holds. Returns logits ``[B, T_new, V]`` for the new
        positions only.
        """
        ...

    def reorder_cache(self, cache: Any, index: LongTensor) -> Any:
        """Select cache rows: the new row ``j`` is the old row ``index[j]``; return the cache to use from now on.

        ``index`` may repeat rows (expanding a batch to beams or to several samples), permute them (beam
        reordering) or leave rows out (dropping finished rows so later steps do less work). Self-attention
        and cross-attention entries, and any per-row state such as the encoder mask, must all follow.
        """
        ...


@runtime_checkable
class Streamer(Protocol):
    """Receives tokens as greedy or sampled decoding produces them (``generate(..., streamer=...)``)."""

    def put(self, new_token_ids: Tensor, finished: Tensor) -> None:
        """Called once per step with one entry per output row (``B * num_return_sequences``).

        ``new_token_ids`` ``[R]`` holds the token each row generated at this step, or the pad id for a row that
        had already finished; ``finished`` ``[R]`` (bool) is True for every row that is done after this step,
        including the rows whose token just now was EOS or hit the length limit.
        """
        ...

    def end(self) -> None:
        """Called once after the last step."""
        ...
