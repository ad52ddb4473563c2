"""``sdcup evaluate`` and ``predict`` with ``--compile`` (a tracing-only backend, so the test stays cheap) print
exactly what they print without it."""

from __future__ import annotations

import pytest
import torch
from sdcup_testing import write_dataset, write_vocab

from alicemind.core.cli import main
from alicemind.sdcup import SdcupConfig, SdcupForNL2SQL, SdcupTokenizer

COMPILE = ["--compile", "--compile-backend", "aot_eager"]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_evaluate_and_predict_with_compile_print_the_eager_output(tmp_path, capsys):
    torch.manual_seed(0)
    tok = SdcupTokenizer.from_vocab_file(write_vocab(tmp_path))
    SdcupForNL2SQL(SdcupConfig.from_pretrained("sdcup.test", vocab_size=tok.vocab_size)).save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    (tmp_path / "data").mkdir()
    paths = write_dataset(tmp_path / "data", train=1, dev=6)
    (tmp_path / "shop.csv").write_text("name,city,price,year\nalpha,paris,10,3\nbeta,rome,20,4\n")
    verbs = [
        ["sdcup", "evaluate", "--model", str(tmp_path / "m"), str(paths["dev_file"]), str(paths["tables"])],
        ["sdcup", "predict", "--model", str(tmp_path / "m"), "what is the price of beta", str(tmp_path / "shop.csv")],
    ]
    for argv in verbs:
        capsys.readouterr()
        assert main(argv) == 0
        eager = capsys.readouterr().out
        assert main([*argv, *COMPILE]) == 0
        compiled = capsys.readouterr()
        assert compiled.out == eager and eager.strip()
        assert "compiled forward for a new input shape" in compiled.err
