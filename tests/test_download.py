"""The downloader against a local HTTP server (127.0.0.1) started by the tests."""

from __future__ import annotations

import hashlib
import io
import re
import socket
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from oodml.datasets import download as dl
from oodml.datasets.cub import load_cub
from oodml.errors import DatasetNotFoundError, DownloadError, OodmlError, UnsafeFileError

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.files``; ``server.mode``: ``range`` (honours Range), ``ignore_range``
    (always the whole file with 200) or ``truncate`` (announces the full length, sends half)."""

    def do_GET(self):  # noqa: N802
        srv = self.server
        rng = self.headers.get("Range")
        srv.requests.append((self.path, rng))
        data = srv.files.get(self.path.lstrip("/"))
        if data is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        if rng and srv.mode != "ignore_range":
            m = re.fullmatch(r"bytes=(\d+)-", rng.strip())
            start = int(m.group(1)) if m else 0
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
        if srv.gate is not None:  # hold the transfer until the test opens the gate
            srv.gate.wait(20)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.mode == "truncate":
            body = body[: len(body) // 2]
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files = {"payload.bin": PAYLOAD}
    srv.mode = "range"
    srv.requests = []
    srv.gate = None
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


@pytest.fixture
def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _files(folder: Path) -> list[str]:
    """Names in ``folder``, without the (empty, harmless) per-archive lock files of fetch_dataset."""
    locks = [p for p in folder.iterdir() if p.name.endswith(".lock")]
    assert all(p.name.startswith(".") and p.stat().st_size == 0 for p in locks)
    return sorted(p.name for p in folder.iterdir() if p not in locks)


# ---------------------------------------------------------------------------------------------
# download_url
# ---------------------------------------------------------------------------------------------
def test_download_verifies_and_renames(server, tmp_path):
    dest = tmp_path / "dl" / "payload.bin"
    assert dl.download_url(f"{server.url}/payload.bin", dest, md5=PAYLOAD_MD5, progress=False) == dest
    assert dest.read_bytes() == PAYLOAD and _files(dest.parent) == ["payload.bin"]
    # an existing verified file is used without connecting
    n = len(server.requests)
    dl.download_url(f"{server.url}/payload.bin", dest, md5=PAYLOAD_MD5, progress=False)
    assert len(server.requests) == n


def test_resume_partial_file_with_range(server, tmp_path):
    dest = tmp_path / "payload.bin"
    Path(str(dest) + ".part").write_bytes(PAYLOAD[:30_000])
    dl.download_url(f"{server.url}/payload.bin", dest, md5=PAYLOAD_MD5, progress=False)
    assert server.requests == [("/payload.bin", "bytes=30000-")]
    assert dest.read_bytes() == PAYLOAD and _files(tmp_path) == ["payload.bin"]


def test_server_ignoring_range_restarts_download(server, tmp_path):
    server.mode = "ignore_range"
    dest = tmp_path / "payload.bin"
    Path(str(dest) + ".part").write_bytes(b"\0" * 30_000)  # would corrupt the file if appended to
    dl.download_url(f"{server.url}/payload.bin", dest, md5=PAYLOAD_MD5, progress=False)
    assert server.requests == [("/payload.bin", "bytes=30000-")]
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_file_answered_416(server, tmp_path):
    dest = tmp_path / "payload.bin"
    Path(str(dest) + ".part").write_bytes(PAYLOAD)
    dl.download_url(f"{server.url}/payload.bin", dest, md5=PAYLOAD_MD5, progress=False)
    assert dest.read_bytes() == PAYLOAD and _files(tmp_path) == ["payload.bin"]


def test_checksum_mismatch(server, tmp_path):
    dest = tmp_path / "payload.bin"
    wrong = "0" * 32
    with pytest.raises(DownloadError) as err:
        dl.download_url(f"{server.url}/payload.bin", dest, md5=wrong, progress=False)
    msg = str(err.value)
    assert "payload.bin" in msg and wrong in msg and PAYLOAD_MD5 in msg and "rerun with --download" in msg
    assert "\n" not in msg
    assert _files(tmp_path) == []  # neither the final file nor a .part to resume from


def test_truncated_transfer_keeps_part_then_resumes(server, tmp_path):
    server.mode = "truncate"
    dest = tmp_path / "payload.bin"
    with pytest.raises(DownloadError) as err:
        dl.download_url(f"{server.url}/payload.bin", dest, md5=PAYLOAD_MD5, progress=False)
    msg = str(err.value)
    assert "truncated" in msg and f"51200 of {len(PAYLOAD)} bytes" in msg and PAYLOAD_MD5 in msg
    assert "payload.bin.part" in msg and "resume" in msg
    assert _files(tmp_path) == ["payload.bin.part"]  # nothing that looks complete
    server.mode = "range"
    dl.download_url(f"{server.url}/payload.bin", dest, md5=PAYLOAD_MD5, progress=False)
    assert server.requests[-1] == ("/payload.bin", "bytes=51200-")
    assert dest.read_bytes() == PAYLOAD and _files(tmp_path) == ["payload.bin"]


def test_existing_file_with_wrong_checksum(tmp_path, closed_port):
    dest = tmp_path / "payload.bin"
    dest.write_bytes(b"something else")
    with pytest.raises(DownloadError, match=f"MD5 .* expected {PAYLOAD_MD5}.*delete it"):
        dl.download_url(f"http://127.0.0.1:{closed_port}/payload.bin", dest, md5=PAYLOAD_MD5, progress=False)


def test_offline_is_one_clear_line(tmp_path, closed_port):
    url = f"http://127.0.0.1:{closed_port}/payload.bin"
    dest = tmp_path / "payload.bin"
    with pytest.raises(DownloadError) as err:
        dl.download_url(url, dest, md5=PAYLOAD_MD5, progress=False)
    msg = str(err.value)
    assert "\n" not in msg and url in msg and str(dest) in msg and "by hand" in msg
    assert not dest.exists()


def test_http_error_names_status(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        dl.download_url(f"{server.url}/absent.bin", tmp_path / "absent.bin", progress=False)


# ---------------------------------------------------------------------------------------------
# ftp:// (SOP's official source): resume with REST, against a local pyftpdlib server
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def ftp_server(tmp_path):
    pytest.importorskip("pyftpdlib")
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import ThreadedFTPServer

    home = tmp_path / "ftp_home"
    (home / "pub").mkdir(parents=True)
    (home / "pub" / "payload.bin").write_bytes(PAYLOAD)
    commands: list[str] = []

    class Handler(FTPHandler):
        refuse_rest = False

        def pre_process_command(self, line, cmd, arg):
            commands.append(line)
            return super().pre_process_command(line, cmd, arg)

        def ftp_REST(self, line):
            if Handler.refuse_rest:
                self.respond("502 Command not implemented.")
                return
            return super().ftp_REST(line)

    auth = DummyAuthorizer()
    auth.add_anonymous(str(home))
    Handler.authorizer = auth
    Handler.passive_ports = None
    srv = ThreadedFTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"timeout": 0.05}, daemon=True)
    thread.start()
    srv.url = f"ftp://127.0.0.1:{srv.address[1]}"
    srv.commands = commands
    srv.handler = Handler
    try:
        yield srv
    finally:
        srv.close_all()
        thread.join(5)


def test_ftp_download_verifies(ftp_server, tmp_path):
    out = dl.download_url(f"{ftp_server.url}/pub/payload.bin", tmp_path / "p.bin", PAYLOAD_MD5, progress=False)
    assert out.read_bytes() == PAYLOAD and not (tmp_path / "p.bin.part").exists()
    assert not any(c.startswith("REST") for c in ftp_server.commands)


def test_ftp_resumes_partial_file(ftp_server, tmp_path):
    (tmp_path / "p.bin.part").write_bytes(PAYLOAD[:30000])
    out = dl.download_url(f"{ftp_server.url}/pub/payload.bin", tmp_path / "p.bin", PAYLOAD_MD5, progress=False)
    assert out.read_bytes() == PAYLOAD
    assert "REST 30000" in ftp_server.commands  # only the missing bytes were asked for


def test_ftp_server_refusing_rest_sends_the_whole_file(ftp_server, tmp_path):
    ftp_server.handler.refuse_rest = True
    (tmp_path / "p.bin.part").write_bytes(b"x" * 30000)  # would corrupt the file if appended to
    out = dl.download_url(f"{ftp_server.url}/pub/payload.bin", tmp_path / "p.bin", PAYLOAD_MD5, progress=False)
    assert out.read_bytes() == PAYLOAD
    assert "REST 30000" in ftp_server.commands and ftp_server.commands.count("RETR /pub/payload.bin") == 1


def test_ftp_complete_part_file_is_not_fetched_again(ftp_server, tmp_path):
    (tmp_path / "p.bin.part").write_bytes(PAYLOAD)
    out = dl.download_url(f"{ftp_server.url}/pub/payload.bin", tmp_path / "p.bin", PAYLOAD_MD5, progress=False)
    assert out.read_bytes() == PAYLOAD
    assert not any(c.startswith("RETR") for c in ftp_server.commands)


def test_ftp_missing_file_is_one_clear_line(ftp_server, tmp_path):
    with pytest.raises(DownloadError) as err:
        dl.download_url(f"{ftp_server.url}/pub/absent.bin", tmp_path / "absent.bin", progress=False)
    msg = str(err.value)
    assert "\n" not in msg and "absent.bin" in msg and "550" in msg


def test_ftp_offline_is_one_clear_line(tmp_path, closed_port):
    with pytest.raises(DownloadError) as err:
        dl.download_url(f"ftp://127.0.0.1:{closed_port}/pub/x.zip", tmp_path / "x.zip", progress=False)
    assert "\n" not in str(err.value) and str(tmp_path / "x.zip") in str(err.value)


# ---------------------------------------------------------------------------------------------
# fetch_dataset and loaders with download=True
# ---------------------------------------------------------------------------------------------
def _tiny_cub_tgz(extra: list[tuple[str, bytes]] = ()) -> bytes:
    members: list[tuple[str, bytes]] = []
    images, labels = [], []
    for iid, c in enumerate([1, 2, 1, 2], 1):
        rel = f"00{c}.Bird_{c}/img_{iid}.jpg"
        buf = io.BytesIO()
        Image.new("RGB", (4, 4), (iid * 40, 0, 0)).save(buf, format="JPEG")
        members.append((f"CUB_200_2011/images/{rel}", buf.getvalue()))
        images.append(f"{iid} {rel}")
        labels.append(f"{iid} {c}")
    members += [
        ("CUB_200_2011/images.txt", ("\n".join(images) + "\n").encode()),
        ("CUB_200_2011/image_class_labels.txt", ("\n".join(labels) + "\n").encode()),
        ("CUB_200_2011/classes.txt", b"1 001.Bird_1\n2 002.Bird_2\n"),
        ("attributes.txt", b"1 has_bill_shape::curved\n"),
        *extra,
    ]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _serve_cub(server, monkeypatch, blob: bytes) -> None:
    server.files["CUB_200_2011.tgz"] = blob
    src = dl.Source("CUB_200_2011.tgz", "https://example.invalid/CUB_200_2011.tgz", hashlib.md5(blob).hexdigest())
    monkeypatch.setitem(dl.SOURCES, "cub", dl.DatasetSource("CUB-200-2011", "cub", (src,), "https://example.invalid"))
    monkeypatch.setenv(dl.MIRROR_ENV, server.url + "/")


def test_loader_downloads_only_when_asked(server, tmp_path, monkeypatch):
    _serve_cub(server, monkeypatch, _tiny_cub_tgz())
    with pytest.raises(DatasetNotFoundError):
        load_cub(root=tmp_path)
    assert server.requests == []  # never without download=True
    ds = load_cub(root=tmp_path, download=True, progress=False)
    assert ds.root == tmp_path / "cub" / "CUB_200_2011"
    assert ds.classes == ["001.Bird_1", "002.Bird_2"] and len(ds) == 4
    assert server.requests == [("/CUB_200_2011.tgz", None)]
    # archive removed after extraction; a stamp records it
    assert _files(tmp_path / "cub") == [".CUB_200_2011.tgz.extracted", "CUB_200_2011", "attributes.txt"]
    load_cub(root=tmp_path, download=True)  # present now: no second download
    assert len(server.requests) == 1
    assert dl.fetch_dataset("cub", tmp_path) == tmp_path / "cub"  # stamp: nothing to do
    assert len(server.requests) == 1


def test_concurrent_fetches_download_once(server, tmp_path, monkeypatch, capsys):
    """A second fetch of the same archive waits for the first, says so, then skips the file."""
    _serve_cub(server, monkeypatch, _tiny_cub_tgz())
    server.gate = threading.Event()
    results, errors = {}, []

    def fetch(name):
        try:
            results[name] = dl.fetch_dataset("cub", tmp_path, progress=False)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    first = threading.Thread(target=fetch, args=("first",))
    first.start()
    for _ in range(400):  # the first fetch holds the lock once its request reached the server
        if server.requests:
            break
        threading.Event().wait(0.025)
    assert server.requests == [("/CUB_200_2011.tgz", None)]
    second = threading.Thread(target=fetch, args=("second",))
    second.start()
    said = ""
    for _ in range(400):
        said += capsys.readouterr().err
        if "waiting for another process" in said:
            break
        threading.Event().wait(0.025)
    assert "waiting for another process that is fetching CUB_200_2011.tgz" in said
    assert ".CUB_200_2011.tgz.lock" in said
    server.gate.set()
    first.join(20)
    second.join(20)
    assert not errors and not first.is_alive() and not second.is_alive()
    assert results["first"] == results["second"] == tmp_path / "cub"
    assert len(server.requests) == 1  # the second found the finished extraction
    assert len(load_cub(root=tmp_path)) == 4


def test_fetch_refuses_archive_escaping_its_folder(server, tmp_path, monkeypatch):
    _serve_cub(server, monkeypatch, _tiny_cub_tgz(extra=[("../../escaped.txt", b"evil")]))
    with pytest.raises(UnsafeFileError, match="escaped.txt.*outside"):
        dl.fetch_dataset("cub", tmp_path / "data", progress=False)
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "data" / "cub" / "CUB_200_2011").exists()


def test_fetch_checksum_mismatch_leaves_nothing(server, tmp_path, monkeypatch):
    _serve_cub(server, monkeypatch, _tiny_cub_tgz())
    server.files["CUB_200_2011.tgz"] = b"<html>mirror error page</html>"
    with pytest.raises(DownloadError, match="checksum mismatch for CUB_200_2011.tgz"):
        load_cub(root=tmp_path, download=True, progress=False)
    assert _files(tmp_path / "cub") == []


def test_fetch_offline_names_url_and_destination(tmp_path, monkeypatch, closed_port):
    monkeypatch.setenv(dl.MIRROR_ENV, f"http://127.0.0.1:{closed_port}")
    with pytest.raises(DownloadError) as err:
        dl.fetch_dataset("omniglot", tmp_path, progress=False)
    msg = str(err.value)
    assert "images_background.zip" in msg and str(tmp_path / "omniglot" / "images_background.zip") in msg


def test_sources_table_and_non_downloadable():
    assert dl.SOURCES["cub"].files[0].md5 == "97eceeb196236b17998738112f37df78"
    assert [s.filename for s in dl.SOURCES["cars"].files] == ["car_ims.tgz", "cars_annos.mat"]
    assert dl.source_for("stanford_online_products").files[0].url.startswith("ftp://cs.stanford.edu/")
    assert [s.filename for s in dl.SOURCES["omniglot"].files if s.default] == [
        "images_background.zip",
        "images_evaluation.zip",
    ]
    with pytest.raises(OodmlError, match="nothing to download"):
        dl.fetch_dataset("folder", "/nonexistent")
