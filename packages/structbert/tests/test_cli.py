"""``alicemind structbert convert|download``: real files, a real local HTTP server, exit codes."""

import functools
import hashlib
import http.server
import json
import threading

import pytest
import torch
from structbert_releases import TINY, hf_names, release_state_dict

from alicemind.core.cli import main
from alicemind.core.hub import CheckpointEntry, register_checkpoint, unregister_checkpoint
from alicemind.structbert import StructBertModel


def test_convert_release_file_to_ours(tmp_path, capsys):
    torch.save(release_state_dict(), tmp_path / "en_model")
    (tmp_path / "large_bert_config.json").write_text(json.dumps(TINY))
    status = main(
        [
            "structbert",
            "convert",
            str(tmp_path / "en_model"),
            str(tmp_path / "out"),
            "--config",
            str(tmp_path / "large_bert_config.json"),
        ]
    )
    assert status == 0
    assert "structbert-release format" in capsys.readouterr().out
    model = StructBertModel.from_pretrained(tmp_path / "out")
    assert model.source_format == "alicemind"
    for key, value in hf_names(release_state_dict()).items():
        assert torch.equal(model.export_state_dict()[key], value)


def test_convert_errors_exit_2_without_traceback(tmp_path, capsys):
    assert main(["structbert", "convert", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err
    torch.save({"embeddings.word_embeddings.weight": torch.zeros(3, 3)}, tmp_path / "en_model")
    (tmp_path / "config.json").write_text(json.dumps(TINY))
    assert main(["structbert", "convert", str(tmp_path / "en_model"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "missing key" in err and "Traceback" not in err
    assert main(["structbert", "convert", "--no-such-flag"]) == 2


@pytest.fixture
def served_release(tmp_path):
    root = tmp_path / "server"
    root.mkdir()
    torch.save(release_state_dict(), root / "en_model")
    payload = (root / "en_model").read_bytes()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    entry = CheckpointEntry(
        name="structbert.test.tiny",
        family="structbert",
        url=f"http://127.0.0.1:{server.server_port}/en_model",
        filename="en_model",
        format="structbert-release",
        size=len(payload),
        sha256=hashlib.sha256(payload).hexdigest(),
        config={"preset": "structbert.tiny-test"},
    )
    from alicemind.core.config import register_preset

    register_preset("structbert", "structbert.tiny-test", TINY)
    register_checkpoint(entry, overwrite=True)
    yield entry
    unregister_checkpoint(entry.name)
    server.shutdown()


def test_download_caches_and_converts(served_release, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ALICEMIND_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ALICEMIND_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert main(["structbert", "download", served_release.name, "--output", str(tmp_path / "conv")]) == 0
    model = StructBertModel.from_pretrained(tmp_path / "conv")
    assert torch.equal(
        model.embeddings.word_embeddings.weight, release_state_dict()["embeddings.word_embeddings.weight"]
    )
    cached = tmp_path / "cache" / "structbert" / served_release.name / "en_model"
    assert cached.is_file()
    # Offline, the cached copy is enough.
    assert main(["structbert", "download", served_release.name, "--offline", "--no-convert"]) == 0


def test_download_offline_without_cache_names_the_missing_file(served_release, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ALICEMIND_CACHE", str(tmp_path / "empty-cache"))
    assert main(["structbert", "download", served_release.name, "--offline"]) == 2
    err = capsys.readouterr().err
    assert "offline" in err.lower() and "en_model" in err
    assert not (tmp_path / "empty-cache" / "structbert" / served_release.name / "en_model").exists()
    assert main(["structbert", "download", "structbert.en.lrage", "--offline"]) == 2
    assert "structbert.en.large" in capsys.readouterr().err  # suggests the close name
