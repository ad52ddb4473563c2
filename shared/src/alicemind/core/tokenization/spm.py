"""`SentencePieceTokenizer`: a SentencePiece model with the fairseq / XLM-R id layout (VECO)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import sentencepiece as spm

from alicemind.core.tokenization.base import BaseTokenizer
from alicemind.core.tokenization.encoding import RawEncoding

if TYPE_CHECKING:  # typing.Self is Python 3.11+; annotations are strings here
    from typing import Self

MODEL_FILE = "sentencepiece.bpe.model"  # XLM-R's and VECO's file name, whatever the model type inside
FAIRSEQ_SPECIALS = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
FAIRSEQ_OFFSET = 1  # fairseq's dictionary puts <s> <pad> </s> <unk> first, so spm piece i becomes id i + 1


# Characters Python calls whitespace below U+3001 (SentencePiece's NFKC folds them all into spaces).
_WHITESPACE = np.asarray([c for c in range(0x3001) if chr(c).isspace()], dtype=np.uint32)


def _char_offsets(text: str, begins: np.ndarray, ends: np.ndarray) -> list[tuple[int, int]]:
    """Character offsets of pieces from SentencePiece's UTF-8 byte offsets, in Hugging Face's convention: a
    piece's leading whitespace (its "▁") is left out, and a whitespace-only piece points at the character after
    it (the word its "▁" belongs to)."""
    codepoints = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    if text.isascii():
        begins_c, ends_c = begins, ends
    else:
        widths = 1 + (codepoints >= 0x80) + (codepoints >= 0x800) + (codepoints >= 0x10000)
        char_starts = np.concatenate([[0], np.cumsum(widths)])
        begins_c, ends_c = np.searchsorted(char_starts, begins), np.searchsorted(char_starts, ends)
    # next_word[i]: the first non-whitespace character at or after i (len(text) if none).
    solid = np.flatnonzero(~np.isin(codepoints, _WHITESPACE))
    positions = np.searchsorted(solid, np.arange(len(text) + 1))
    next_word = np.append(solid, len(text))[positions]
    starts = next_word[begins_c]
    ends = np.where(starts < ends_c, ends_c, np.minimum(starts + 1, len(text)))
    return list(zip(starts.tolist(), ends.tolist()))


class SentencePieceTokenizer(BaseTokenizer):
    """XLM-R-style SentencePiece tokenizer: `<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3, spm pieces shifted by one,
    `<mask>` last; `<s> A </s>` / `<s> A </s></s> B </s>`; special-token strings in the text are matched only
    with `split_special_tokens=False`."""

    hf_tokenizer_class: ClassVar[str] = "XLMRobertaTokenizer"
    hf_aliases: ClassVar[tuple[str, ...]] = ("XLMRobertaTokenizerFast",)
    model_input_names: ClassVar[tuple[str, ...]] = ("input_ids", "attention_mask")
    pair_separator_count: ClassVar[int] = 2
    pair_type_id: ClassVar[int] = 0
    default_special_tokens: ClassVar[Mapping[str, str]] = {
        "bos": "<s>",
        "cls": "<s>",
        "eos": "</s>",
        "sep": "</s>",
        "pad": "<pad>",
        "unk": "<unk>",
        "mask": "<mask>",
    }

    def __init__(self, model: str | Path | bytes, **kwargs: Any) -> None:
        """`model` is a SentencePiece .model file or its serialized bytes; keyword arguments as `BaseTokenizer`."""
        super().__init__(**kwargs)
        if not isinstance(model, bytes):
            path = Path(model)
            if not path.is_file():
                raise FileNotFoundError(f"SentencePiece model file not found: {path}")
            model = path.read_bytes()
        self._model_bytes = model
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(model)
        except RuntimeError as err:
            raise ValueError(f"not a valid SentencePiece model: {err}") from err
        n_pieces = self._sp.get_piece_size()
        self._fixed = {**FAIRSEQ_SPECIALS, self.special_tokens.get("mask", "<mask>"): n_pieces + FAIRSEQ_OFFSET}
        self._fixed_by_id = {index: token for token, index in self._fixed.items()}
        # spm id -> our id in one table, so a whole batch is remapped with one gather.
        self._spm_to_id = np.arange(n_pieces, dtype=np.int64) + FAIRSEQ_OFFSET
        self._spm_to_id[self._sp.unk_id()] = FAIRSEQ_SPECIALS["<unk>"]
        unknown = [t for t in self.all_special_tokens if self._token_to_id(t) is None]
        if unknown:
            raise ValueError(f"special tokens {unknown} are neither fairseq specials, <mask> nor SentencePiece pieces")
        specials = sorted(self.all_special_tokens, key=len, reverse=True)
        self._special_re = re.compile("|".join(map(re.escape, specials))) if specials else None

    # ----- vocabulary ---------------------------------------------------------------------------------------
    def _token_to_id(self, token: str) -> int | None:
        if token in self._fixed:
            return self._fixed[token]
        spm_id = self._sp.piece_to_id(token)
        if spm_id == self._sp.unk_id() and token != self._sp.id_to_piece(spm_id):
            return None
        return int(self._spm_to_id[spm_id])

    def _id_to_token(self, index: int) -> str | None:
        if index in self._fixed_by_id:
            return self._fixed_by_id[index]
        spm_id = index - FAIRSEQ_OFFSET
        return self._sp.id_to_piece(spm_id) if 0 <= spm_id < self._sp.get_piece_size() else None

    @property
    def vocab_size(self) -> int:
        """SentencePiece pieces + the fairseq offset + `<mask>` (XLM-R's count)."""
        return self._sp.get_piece_size() + FAIRSEQ_OFFSET + 1

    def __len__(self) -> int:
        return self.vocab_size

    def get_vocab(self) -> dict[str, int]:
        """Token -> id; each fairseq special wins over the spm control piece that shares its id."""
        pieces = self._sp.id_to_piece(list(range(self._sp.get_piece_size())))
        vocab = dict(zip(pieces, self._spm_to_id.tolist()))
        vocab.update(self._fixed)
        return vocab

    # ----- encoding -----------------------------------------------------------------------------------------
    def _segments(self, text: str) -> list[tuple[str | int, int, int]]:
        """Split `text` around special-token strings: (substring, start, end) or (special id, start, end).

        With `split_special_tokens` (the default) nothing is matched: the whole text goes to SentencePiece."""
        if self._special_re is None or self.split_special_tokens:
            return [(text, 0, len(text))]
        out: list[tuple[str | int, int, int]] = []
        last = 0
        for match in self._special_re.finditer(text):
            if match.start() > last:
                out.append((text[last : match.start()], last, match.start()))
            out.append((self._token_to_id(match.group()), match.start(), match.end()))  # type: ignore[arg-type]
            last = match.end()
        if last < len(text) or not out:
            out.append((text[last:], last, len(text)))
        return out

    def _encode_raw(self, texts: list[str], with_offsets: bool) -> list[RawEncoding]:
        segmented = [self._segments(text) for text in texts]
        pieces = [seg for segs in segmented for seg, _, _ in segs if isinstance(seg, str)]
        # One batched spm call for every plain-text piece of every text.
        if with_offsets:
            protos = self._sp.encode(pieces, return_type="proto") if pieces else []
            encoded = [
                (
                    np.fromiter((p.id for p in proto.pieces), dtype=np.int64, count=len(proto.pieces)),
                    np.fromiter((p.begin for p in proto.pieces), dtype=np.int64, count=len(proto.pieces)),
                    np.fromiter((p.end for p in proto.pieces), dtype=np.int64, count=len(proto.pieces)),
                )
                for proto in protos
            ]
        else:
            encoded = (
                [(np.asarray(ids, dtype=np.int64), None, None) for ids in self._sp.encode(pieces)] if pieces else []
            )
        results: list[RawEncoding] = []
        cursor = 0
        for segs in segmented:
            ids: list[int] = []
            offsets: list[tuple[int, int]] | None = [] if with_offsets else None
            for seg, start, end in segs:
                if not isinstance(seg, str):
                    ids.append(seg)
                    if offsets is not None:
                        offsets.append((start, end))
                    continue
                spm_ids, begins, ends = encoded[cursor]
                cursor += 1
                ids.extend(self._spm_to_id[spm_ids].tolist())
                if offsets is not None:
                    offsets.extend((start + b, start + e) for b, e in _char_offsets(seg, begins, ends))
            results.append((ids, offsets))
        return results

    def tokenize(self, text: str) -> list[str]:
        """The pieces of `text` (special-token strings kept whole only if not `split_special_tokens`), without added
        special tokens."""
        ids = self._encode_raw([text], with_offsets=False)[0][0]
        return self.convert_ids_to_tokens(ids)  # type: ignore[return-value]

    def decode(self, ids: Sequence[int] | Any, skip_special_tokens: bool = True) -> str:
        """Ids -> text. Kept special tokens are written as-is, glued to the text around them (as HF does)."""
        ids = np.asarray(ids.tolist() if hasattr(ids, "tolist") else list(ids), dtype=np.int64).reshape(-1)
        special = np.isin(ids, np.asarray(list(self._fixed_by_id), dtype=np.int64))
        if skip_special_tokens:
            return self._sp.decode((ids[~special] - FAIRSEQ_OFFSET).tolist())
        parts: list[str] = []
        for run in np.split(ids, np.flatnonzero(np.diff(special.astype(np.int8))) + 1):
            if run.size == 0:
                continue
            if int(run[0]) in self._fixed_by_id:
                parts.extend(self._fixed_by_id[int(i)] for i in run)
                continue
            spm_ids = (run - FAIRSEQ_OFFSET).tolist()
            text = self._sp.decode(spm_ids)
            # spm drops a run's leading "▁"; after a special token that space is real.
            if parts and self._sp.id_to_piece(spm_ids[0]).startswith("\u2581"):
                text = " " + text
            parts.append(text)
        return "".join(parts)

    # ----- files --------------------------------------------------------------------------------------------
    def _save_files(self, directory: Path) -> list[Path]:
        path = directory / MODEL_FILE
        path.write_bytes(self._model_bytes)
        return [path]

    @classmethod
    def _from_directory(cls, directory: Path, config: dict[str, Any]) -> Self:
        path = directory / MODEL_FILE
        if not path.is_file():
            candidates = sorted(directory.glob("*.model"))
            if len(candidates) != 1:
                raise FileNotFoundError(
                    f"{directory} needs {MODEL_FILE} (or exactly one *.model file); found {[c.name for c in candidates]}"
                )
            path = candidates[0]
        return cls(path, **cls._common_kwargs(config))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"
