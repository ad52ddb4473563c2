"""Hand-checked serialisation: tokens, ids, segments, column spans, the dummy column, knowledge features."""

from __future__ import annotations

import pytest

from alicemind.sdcup import Table, TableError, TableQuestion, TableTooLongError
from alicemind.sdcup.table import DUMMY_COLUMN, header_knowledge, question_knowledge
from alicemind.sdcup.tokenization import collate_serialized


def _table():
    return Table(["name", "price"], ["text", "real"], [["alpha", 10], ["beta", 20]], "t1")


def test_english_question_serialises_with_dummy_column(tokenizer):
    vocab = tokenizer.get_vocab()
    enc = tokenizer.serialize(TableQuestion("What is the price of Alpha", _table()))
    assert enc.tokens == ["[CLS]", "what", "is", "the", "price", "of", "alpha", "[SEP]",
                          "name", "[SEP]", "price", "[SEP]", "空", "列", "[SEP]"]  # fmt: skip
    assert enc.input_ids == [vocab[t] for t in enc.tokens]
    assert enc.segment_ids == [1] * 8 + [2] * 7
    assert enc.question_span == (1, 7)
    assert enc.column_spans == [(8, 9), (10, 11), (12, 14)]
    assert enc.num_columns == 3 and _table().header_with_dummy[-1] == DUMMY_COLUMN
    # price = column name (4); alpha = a one-token cell value (begins a value: 1); header: price named, name via cell.
    assert enc.question_knowledge == [0, 0, 0, 4, 0, 1]
    assert enc.header_knowledge == [3, 1, 0]


def test_pre_split_chinese_tokens_are_looked_up_unchanged(tokenizer):
    table = Table(["城市", "价格"], ["text", "real"], [["小于", 99]], "c")
    q = TableQuestion("价格大于10的城市", table, question_tokens=["价", "格", "大", "于", "10", "的", "城", "市", "X"])
    enc = tokenizer.serialize(q)
    vocab = tokenizer.get_vocab()
    assert enc.tokens[:11] == ["[CLS]", "价", "格", "大", "于", "10", "的", "城", "市", "X", "[SEP]"]
    assert enc.input_ids[9] == vocab["[UNK]"]  # unknown pre-split token -> [UNK], not re-tokenised
    assert enc.tokens[11:] == ["城", "市", "[SEP]", "价", "格", "[SEP]", "空", "列", "[SEP]"]
    assert enc.column_spans == [(11, 13), (14, 16), (17, 19)]
    assert enc.segment_ids == [1] * 11 + [2] * 9
    assert enc.question_knowledge == [4, 4, 7, 7, 5, 0, 4, 4, 0]


def test_collated_batch_indexes_questions_and_columns(tokenizer):
    a = tokenizer.serialize(TableQuestion("price of alpha", _table()))
    b = tokenizer.serialize(TableQuestion("name", Table(["city"], ["text"], [], "t2")))
    batch = collate_serialized([a, b])
    assert batch["input_ids"].shape == (2, len(a.input_ids))
    assert batch["token_type_ids"][1].tolist() == b.segment_ids + [0] * (len(a.input_ids) - len(b.input_ids))
    assert batch["question_index"][0].tolist() == [1, 2, 3]
    assert batch["question_mask"][1].tolist() == [True, False, False]
    assert batch["column_mask"].tolist() == [[True, True, True], [True, True, False]]
    assert batch["column_index"][0, 2].tolist() == [9, 10] and batch["column_token_mask"][0, 0].tolist() == [
        True,
        False,
    ]


def test_bad_tables_and_too_long_input(tokenizer):
    with pytest.raises(TableError, match="duplicate header 'price' \\(columns 0 and 1\\)"):
        Table(["price", "price"])
    with pytest.raises(TableError, match="column 1 has an empty header"):
        Table(["name", "  "])
    with pytest.raises(TableError, match="reserved for the dummy column"):
        Table(["name", DUMMY_COLUMN])
    with pytest.raises(TableError, match="row 0 has 1 cells"):
        Table(["a", "b"], rows=[["x"]])
    bad = Table(["name", "price"], ["text", "real"], [["alpha", "cheap"]], "shop")
    with pytest.raises(TableError, match="column 'price' is typed real but row 0 holds 'cheap'"):
        bad.check_types()
    wide = Table([f"col{i}" for i in range(70)], table_id="wide")
    with pytest.raises(TableTooLongError, match="need 1[0-9]{2} tokens, more than max_seq_length 128"):
        tokenizer.serialize(TableQuestion("price", wide))


def test_knowledge_features_from_question_and_table():
    table = Table(["city", "price"], ["text", "real"], [["new york", 10]])
    tokens = ["price", "in", "new", "york", "above", "30"]
    assert question_knowledge(tokens, table) == [4, 0, 1, 3, 7, 5]
    assert header_knowledge(tokens, table) == [3, 1, 0]
    assert question_knowledge(["na", "##me", "less", "than"], Table(["name"])) == [4, 4, 7, 7]
