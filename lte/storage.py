"""Artifact storage: a local directory or an S3 prefix (boto3), behind one interface.

Keys are relative POSIX paths ("basis/<hash>/vectors.npy"). Writes are atomic on both backends:
local files are written to a temp name and renamed; S3 objects appear whole on PUT.
`atomic_write_bytes` and `staged_dir` give the same guarantee to files written outside a store.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, TypeVar
from urllib.parse import urlparse

T = TypeVar("T")


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    """Write `data` to `path` so that readers see the old file or the whole new one, never a part:
    a temp file in the same directory, fsynced, then renamed over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextmanager
def staged_dir(final: Path | str) -> Iterator[Path]:
    """A directory that appears at `final` whole or not at all: the block fills a hidden temp
    directory beside it, which is renamed to `final` when the block succeeds and deleted when it
    raises. `final` must not exist yet (per-run output directories)."""
    final = Path(final)
    if final.exists():
        raise FileExistsError(f"{final} already exists; staged directories are written once (one per run)")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        yield staging
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


class ArtifactStore(Protocol):
    def put_file(self, local_path: Path, key: str) -> str: ...
    def put_bytes(self, data: bytes, key: str) -> str: ...
    def get_file(self, key: str, local_path: Path) -> Path: ...
    def get_bytes(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str = "") -> list[str]: ...
    def delete(self, key: str) -> None: ...
    def uri(self, key: str) -> str: ...


class LocalStore:
    def __init__(self, root: Path | str):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents and path != self.root:
            raise ValueError(f"key {key!r} escapes the store root {self.root}")
        return path

    def put_file(self, local_path: Path, key: str) -> str:
        return self.put_bytes(Path(local_path).read_bytes(), key)

    def put_bytes(self, data: bytes, key: str) -> str:
        atomic_write_bytes(self._path(key), data)
        return self.uri(key)

    def get_file(self, key: str, local_path: Path) -> Path:
        local_path = Path(local_path)
        local_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self._path(key), local_path)
        return local_path

    def get_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def list(self, prefix: str = "") -> list[str]:
        base = self.root
        return sorted(
            p.relative_to(base).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.endswith(".tmp") and p.relative_to(base).as_posix().startswith(prefix)
        )

    def delete(self, key: str) -> None:
        """Remove a key (a missing key is fine: deleting is idempotent) and the directories it
        leaves empty, as an S3 prefix disappears with its last key."""
        path = self._path(key)
        path.unlink(missing_ok=True)
        for parent in path.parents:
            if parent == self.root or not parent.is_relative_to(self.root):
                break
            try:
                parent.rmdir()  # only succeeds when empty
            except OSError:
                break

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()

    def local_path(self, key: str) -> Path:
        return self._path(key)


# botocore/requests/urllib3 raise many classes; these names (and these S3 error codes) are the
# transport and overload failures that a later attempt can succeed past.
_TRANSIENT_NAMES = {
    "EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError", "ConnectTimeoutError",
    "ConnectionError", "ConnectionResetError", "ConnectionRefusedError", "ConnectionAbortedError",
    "BrokenPipeError", "TimeoutError", "ReadTimeout", "ConnectTimeout", "ProtocolError",
}
_TRANSIENT_CODES = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "Throttling", "503", "500"}


def is_transient(exc: BaseException) -> bool:
    """True for a network or service-overload failure that retrying may fix (S3, HTTP); False for
    everything else (missing keys, bad data, refused promotions, bugs)."""
    if type(exc).__name__ in _TRANSIENT_NAMES:
        return True
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code in _TRANSIENT_CODES


def with_retries(fn: Callable[[], T], attempts: int = 4, base_delay: float = 0.2) -> T:
    """Retry transient S3/HTTP failures with exponential backoff; the last error propagates."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc) or attempt == attempts - 1:
                raise
            time.sleep(base_delay * 2**attempt)
    raise AssertionError("unreachable")


class S3Store:
    """s3://bucket/prefix through boto3. `endpoint_url` points at MinIO/moto/etc. when set."""

    def __init__(self, uri: str, endpoint_url: str | None = None):
        import boto3
        from botocore.config import Config

        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"expected s3://bucket/prefix, got {uri!r}")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
        self.client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_file(self, local_path: Path, key: str) -> str:
        with_retries(lambda: self.client.upload_file(str(local_path), self.bucket, self._key(key)))
        return self.uri(key)

    def put_bytes(self, data: bytes, key: str) -> str:
        with_retries(lambda: self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data))
        return self.uri(key)

    def _missing(self, exc: Exception) -> bool:
        response = getattr(exc, "response", None)
        return isinstance(response, dict) and response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}

    def _reading(self, key: str, read: Callable[[], T]) -> T:
        """A read with retries; a missing key raises FileNotFoundError, as LocalStore does."""
        try:
            return with_retries(read)
        except Exception as exc:
            if self._missing(exc):
                raise FileNotFoundError(f"{self.uri(key)} does not exist") from exc
            raise

    def get_file(self, key: str, local_path: Path) -> Path:
        local_path = Path(local_path)
        local_path.parent.mkdir(parents=True, exist_ok=True)
        self._reading(key, lambda: self.client.download_file(self.bucket, self._key(key), str(local_path)))
        return local_path

    def get_bytes(self, key: str) -> bytes:
        obj = self._reading(key, lambda: self.client.get_object(Bucket=self.bucket, Key=self._key(key)))
        return obj["Body"].read()

    def exists(self, key: str) -> bool:
        try:
            self._reading(key, lambda: self.client.head_object(Bucket=self.bucket, Key=self._key(key)))
            return True
        except FileNotFoundError:
            return False

    def _iter_keys(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        full = self._key(prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
            for obj in page.get("Contents", []):
                yield obj["Key"][strip:]

    def list(self, prefix: str = "") -> list[str]:
        return sorted(with_retries(lambda: list(self._iter_keys(prefix))))

    def delete(self, key: str) -> None:
        """Remove a key (S3 answers a missing key with success: deleting is idempotent)."""
        with_retries(lambda: self.client.delete_object(Bucket=self.bucket, Key=self._key(key)))

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"


def open_store(uri: str | None, local_root: Path, endpoint_url: str | None = None) -> ArtifactStore:
    """The artifact store for settings.storage: S3 when `uri` is s3://..., else a local dir."""
    if uri and uri.startswith("s3://"):
        return S3Store(uri, endpoint_url=endpoint_url)
    return LocalStore(Path(uri) if uri else local_root)
