"""RepresentationBank: bounded memory, fp16, memory maps, the snapshot ring, state on disk."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alicemind.cap import RepresentationBank, bank_bytes


def test_memory_is_bounded_as_documented(capsys):
    bank = RepresentationBank(1000, 16, max_snapshots=3)
    printed = capsys.readouterr().out
    assert bank.nbytes == 1000 * 16 * 2 * (2 + 3) + 8 * 1000 == bank_bytes(1000, 16, 3)
    held = sum(c.numel() * c.element_size() for c in bank._columns.values()) + bank.labels.numel() * 8
    assert held == bank.nbytes
    assert "1000 examples x 16 dims" in printed and "164.1 KiB" in printed  # 168,000 bytes
    # MNLI with BERT-base: 393k x 768 fp16 with 9 snapshots is 6.2 GiB, not the original's 13 GB of fp32
    assert bank_bytes(392702, 768, 9) / 2**30 == pytest.approx(6.18, abs=0.01)


def test_snapshot_ring_keeps_the_newest(tmp_path):
    bank = RepresentationBank(4, 3, max_snapshots=2, log=lambda s: None)
    for tag in range(3):
        bank.begin_snapshot(tag)
        bank.write("snapshots", torch.arange(4), torch.full((4, 3), float(tag + 1)))
    assert bank.snapshot_tags == [1, 2] and bank.width("snapshots") == 2
    rows = bank.rows("snapshots", torch.tensor([0, 3]))
    expected = torch.nn.functional.normalize(torch.ones(3), dim=0)
    torch.testing.assert_close(rows.float(), expected.expand(2, 2, 3), atol=1e-3, rtol=1e-3)
    assert rows.dtype == torch.float16
    assert bank.rows("teacher", torch.tensor([0])) is None  # not filled yet


def test_memory_mapped_bank_reopens_with_its_content(tmp_path):
    bank = RepresentationBank(6, 4, max_snapshots=2, directory=tmp_path / "bank", log=lambda s: None)
    reps = torch.randn(6, 4)
    bank.write("teacher", torch.arange(6), reps, torch.tensor([0, 1, 2, 0, 1, 2]))
    bank.mark_filled("teacher")
    bank.begin_snapshot(5)
    bank.write("snapshots", torch.arange(6), reps * 2)
    bank.flush()
    assert isinstance(np.load(tmp_path / "bank" / "teacher.npy", mmap_mode="r"), np.memmap)
    again = RepresentationBank(6, 4, max_snapshots=2, directory=tmp_path / "bank", log=lambda s: None)
    torch.testing.assert_close(again.rows("teacher", torch.arange(6)), bank.rows("teacher", torch.arange(6)))
    assert again.snapshot_tags == [5] and again.labels.tolist() == [0, 1, 2, 0, 1, 2]
    again.drop_snapshots_after(4)
    assert again.rows("snapshots", torch.arange(2)) is None
    with pytest.raises(ValueError, match="shape/dtype"):
        RepresentationBank(6, 8, max_snapshots=2, directory=tmp_path / "bank", log=lambda s: None)


def test_large_bank_without_directory_is_refused():
    with pytest.raises(ValueError, match="give a directory"):
        RepresentationBank(10_000, 64, memmap_threshold_bytes=1000, log=lambda s: None)
