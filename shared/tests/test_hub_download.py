"""Downloads and fetches against a real HTTP server on 127.0.0.1 (Range support, dropped connections)."""

from __future__ import annotations

import hashlib
import io
import random
import re
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from alicemind.core.hub import (
    CheckpointEntry,
    ChecksumError,
    DownloadError,
    HubError,
    OfflineError,
    UnsafeArchiveError,
    download_file,
    fetch_checkpoint,
    register_checkpoint,
    unregister_checkpoint,
)

PAYLOAD = random.Random(0).randbytes(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class FileServer:
    """Serves `files` by path; records every request; can ignore Range or drop the next response after N bytes."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {"/model.bin": PAYLOAD}
        self.requests: list[dict] = []
        self.ignore_range = False
        self.drop_next_after: int | None = None
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                record = {"path": self.path, "range": self.headers.get("Range"), "sent": 0}
                state.requests.append(record)
                data = state.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", record["range"] or "")
                if match and not state.ignore_range:
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if state.drop_next_after is not None:
                    body, state.drop_next_after = body[: state.drop_next_after], None
                    self.close_connection = True
                record["sent"] = len(body)  # recorded before writing: the client may check as soon as it has read
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = FileServer()
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    monkeypatch.delenv("ALICEMIND_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("ALICEMIND_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("alicemind.core.hub.download._RETRY_DELAY_S", 0.0)


def test_full_download(server, tmp_path):
    dest = download_file(f"{server.url}/model.bin", tmp_path / "a" / "model.bin", sha256=SHA,
                         expected_size=len(PAYLOAD), progress=False)  # fmt: skip
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "a" / "model.bin.part").exists()
    assert [r["range"] for r in server.requests] == [None]


def test_resume_after_dropped_connection(server, tmp_path):
    dest = tmp_path / "model.bin"
    server.drop_next_after = 100_000
    with pytest.raises(DownloadError, match="interrupted.*100000 of 300000 bytes.*resumes"):
        download_file(f"{server.url}/model.bin", dest, sha256=SHA, progress=False, retries=0)
    part = tmp_path / "model.bin.part"
    assert part.stat().st_size == 100_000 and not dest.exists()
    download_file(f"{server.url}/model.bin", dest, sha256=SHA, progress=False, retries=0)
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == SHA
    assert server.requests[1]["range"] == "bytes=100000-"
    assert server.requests[1]["sent"] == 200_000  # only the missing tail was transferred


def test_retries_resume_within_one_call(server, tmp_path):
    server.drop_next_after = 12_345
    dest = download_file(f"{server.url}/model.bin", tmp_path / "m.bin", sha256=SHA, progress=False, retries=1)
    assert dest.read_bytes() == PAYLOAD
    assert [r["range"] for r in server.requests] == [None, "bytes=12345-"]


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    (tmp_path / "m.bin.part").write_bytes(b"stale bytes from elsewhere")
    server.ignore_range = True
    dest = download_file(f"{server.url}/model.bin", tmp_path / "m.bin", sha256=SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests[0]["range"] == "bytes=26-" and server.requests[0]["sent"] == len(PAYLOAD)


def test_complete_part_file_is_not_downloaded_again(server, tmp_path):
    (tmp_path / "m.bin.part").write_bytes(PAYLOAD)
    dest = download_file(f"{server.url}/model.bin", tmp_path / "m.bin", sha256=SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert [(r["range"], r["sent"]) for r in server.requests] == [("bytes=300000-", 0)]  # answered 416


def test_checksum_mismatch_keeps_the_cached_file(server, tmp_path):
    dest = tmp_path / "m.bin"
    dest.write_bytes(b"previous good version")
    with pytest.raises(ChecksumError, match=f"sha256 {SHA} does not match the expected {'0' * 64}"):
        download_file(f"{server.url}/model.bin", dest, sha256="0" * 64, progress=False)
    assert dest.read_bytes() == b"previous good version"
    assert not (tmp_path / "m.bin.part").exists()
    with pytest.raises(ChecksumError, match="server reports 300000 bytes but 5 were expected"):
        download_file(f"{server.url}/model.bin", dest, expected_size=5, progress=False)
    assert dest.read_bytes() == b"previous good version"


def test_http_error_is_reported(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(f"{server.url}/nope.bin", tmp_path / "x", progress=False, retries=3)
    assert len(server.requests) == 1  # a 404 is not worth retrying


@pytest.mark.parametrize("variable", ["ALICEMIND_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_mode_makes_no_request(server, tmp_path, monkeypatch, variable):
    monkeypatch.setenv(variable, "1")
    dest = tmp_path / "m.bin"
    with pytest.raises(OfflineError, match=f"not downloading {server.url}/model.bin; expected the file at {dest}"):
        download_file(f"{server.url}/model.bin", dest, progress=False)
    assert server.requests == []


def _register(name: str, url: str, **kwargs) -> CheckpointEntry:
    entry = CheckpointEntry(name=name, family="testfam", url=url, format="hf-dir", **kwargs)
    register_checkpoint(entry)
    return entry


@pytest.fixture
def registered():
    names: list[str] = []

    def add(name: str, url: str, **kwargs) -> CheckpointEntry:
        names.append(name)
        return _register(name, url, **kwargs)

    yield add
    for name in names:
        unregister_checkpoint(name)


def test_fetch_downloads_once_then_serves_the_cache(server, tmp_path, registered, monkeypatch):
    registered("test.plain", f"{server.url}/model.bin", filename="model.bin", sha256=SHA, size=len(PAYLOAD))
    path = fetch_checkpoint("test.plain", progress=False)
    assert path == tmp_path / "cache" / "testfam" / "test.plain" / "model.bin"
    assert path.read_bytes() == PAYLOAD
    assert fetch_checkpoint("test.plain", progress=False) == path
    monkeypatch.setenv("ALICEMIND_OFFLINE", "1")
    assert fetch_checkpoint("test.plain") == path  # cached: fine offline
    assert len(server.requests) == 1
    monkeypatch.delenv("ALICEMIND_OFFLINE")
    assert fetch_checkpoint("test.plain", force=True, progress=False).read_bytes() == PAYLOAD
    assert len(server.requests) == 2


def test_fetch_offline_names_the_missing_path(server, tmp_path, registered):
    registered("test.offline", f"{server.url}/model.bin", filename="model.bin")
    expected = tmp_path / "cache" / "testfam" / "test.offline" / "model.bin"
    with pytest.raises(OfflineError, match=f"not cached: expected {expected}"):
        fetch_checkpoint("test.offline", offline=True)
    assert server.requests == [] and not expected.exists()


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_fetch_extracts_archives(server, tmp_path, registered):
    server.files["/sofa.tar.gz"] = _tar_gz(
        {"chinese-palm-base/palm_model.pt": b"w", "chinese-palm-base/vocab.txt": b"v"}
    )
    registered("test.archive", f"{server.url}/sofa.tar.gz", filename="chinese-palm-base.tar.gz", archive=True)
    folder = fetch_checkpoint("test.archive", progress=False)
    assert folder == tmp_path / "cache" / "testfam" / "test.archive" / "chinese-palm-base"
    assert (folder / "chinese-palm-base" / "vocab.txt").read_bytes() == b"v"
    assert sorted(p.name for p in folder.parent.iterdir()) == ["chinese-palm-base"]  # archive removed


def test_path_traversal_archive_is_refused(server, tmp_path, registered):
    server.files["/evil.tar.gz"] = _tar_gz({"ok.txt": b"fine", "../../escaped.txt": b"pwned"})
    registered("test.evil", f"{server.url}/evil.tar.gz", filename="evil.tar.gz", archive=True)
    with pytest.raises(UnsafeArchiveError, match="escaped.txt"):
        fetch_checkpoint("test.evil", progress=False)
    folder = tmp_path / "cache" / "testfam" / "test.evil"
    assert not list(tmp_path.rglob("escaped.txt"))
    assert sorted(p.name for p in folder.iterdir()) == ["evil.tar.gz"]  # nothing half-extracted is left


def test_release_without_url_explains_where_to_put_the_file(tmp_path, registered):
    registered("test.gated", None, filename="plug.tar", description="apply at alice-mind.com")
    expected = tmp_path / "cache" / "testfam" / "test.gated" / "plug.tar"
    with pytest.raises(
        HubError, match=f"no public download URL \\(apply at alice-mind.com\\); place plug.tar at {expected}"
    ):
        fetch_checkpoint("test.gated")
    expected.parent.mkdir(parents=True)
    expected.write_bytes(b"placed by hand")
    assert fetch_checkpoint("test.gated") == expected
