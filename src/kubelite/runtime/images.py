"""The node's OCI image store, under ROOT/images:

    blobs/sha256/<hex>   content-addressed blobs: manifests, configs, layer tarballs
    layers/<hex>/        each layer unpacked once, named by its diff id, in overlayfs form
    leases/<holder>      the layers a container's root filesystem stacks (kept by GC)
    index.json           {"refs": {normalised ref: manifest digest},
                          "images": {manifest digest: {"config", "layers", "diff_ids", "size"}}}

The index is rewritten atomically under an flock, so that `kubelite image
import` can add images while an agent is running on the same root.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import ssl
import tarfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from kubelite.runtime import oci, reference
from kubelite.runtime.archive import ArchivedImage, read_archive
from kubelite.runtime.base import Image, RegistryAuth
from kubelite.runtime.errors import ImageError, ImageNotPresent, ImagePullError
from kubelite.runtime.registry import RegistryClient
from kubelite.runtime.unpack import unpack_layer

T = TypeVar("T")
Index = dict[str, Any]
_BARE_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")


class OCIImageStore:
    """The `ImageStore` of base.py, on disk under `root`/images."""

    def __init__(self, root: str | os.PathLike[str], *, insecure_registries: Iterable[str] = (),
                 ca_file: str | None = None, max_parallel_downloads: int = 3) -> None:
        self.root = Path(root) / "images"
        self._insecure = tuple(insecure_registries)
        self._ca_file = ca_file
        self._pulls: dict[str, asyncio.Future[Image]] = {}
        self._unpacks: dict[str, asyncio.Future[None]] = {}
        self._downloads = asyncio.Semaphore(max_parallel_downloads)
        for sub in ("blobs/sha256", "layers", "leases", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    # -- the ImageStore protocol ------------------------------------------------------------

    async def ensure(self, ref: str, *, pull_policy: str,
                     auth: Iterable[RegistryAuth] = ()) -> Image:
        parsed = reference.parse(ref)
        if pull_policy != "Always":
            image = await self.get(str(parsed))
            if image is not None:
                return image
            if pull_policy == "Never":
                raise ImageNotPresent(
                    f'Container image "{ref}" is not present with pull policy of Never')
        return await self.pull(str(parsed), auth=list(auth))

    async def get(self, ref: str) -> Image | None:
        index = await asyncio.to_thread(self._read_index)
        found = self._lookup(index, ref)
        if found is None:
            return None
        name, digest = found
        return await asyncio.to_thread(self._image, index, digest, name)

    async def list(self) -> list[Image]:
        index = await asyncio.to_thread(self._read_index)
        return [await asyncio.to_thread(self._image, index, digest, None)
                for digest in sorted(index["images"])]

    async def remove(self, ref: str) -> None:
        def change(index: Index) -> None:
            found = self._lookup(index, ref)
            if found is None:
                raise ImageError(f"image {ref} not found")
            name, digest = found
            names = [name] if name in index["refs"] else \
                [r for r, d in index["refs"].items() if d == digest]
            for r in names:
                index["refs"].pop(r, None)
            if digest not in index["refs"].values():
                index["images"].pop(digest, None)
        await self._update(change)
        await asyncio.to_thread(self._sweep)

    async def import_archive(self, path: str, *, tag: str | None = None) -> list[Image]:
        return await asyncio.to_thread(self._import_archive, Path(path), tag)

    async def garbage_collect(self, in_use: set[str]) -> int:
        keep_digests: set[str] = set()
        index = await asyncio.to_thread(self._read_index)
        for item in in_use:
            with contextlib.suppress(ImageError):
                if (found := self._lookup(index, item)) is not None:
                    keep_digests.add(found[1])

        def change(index: Index) -> None:
            leased = self._leased_manifests()
            for digest in list(index["images"]):
                if digest in keep_digests or digest in leased:
                    continue
                index["images"].pop(digest)
                for r in [r for r, d in index["refs"].items() if d == digest]:
                    index["refs"].pop(r)
        await self._update(change)
        return await asyncio.to_thread(self._sweep)

    # -- what the runtime needs for root filesystems -------------------------------------------

    async def lease(self, holder: str, image: Image) -> list[str]:
        """Record that `holder` stacks `image`'s layers; returns their directories, base first."""
        index = await asyncio.to_thread(self._read_index)
        entry = index["images"].get(image.digest)
        if entry is None:
            raise ImageError(f"image {image.ref} ({image.digest}) is no longer in the store")
        dirs = [str(self.layer_dir(d)) for d in entry["diff_ids"]]
        doc = {"manifest": image.digest, "diff_ids": entry["diff_ids"]}
        await asyncio.to_thread(_write_atomic, self.root / "leases" / holder,
                                json.dumps(doc).encode())
        return dirs

    async def release(self, holder: str) -> None:
        await asyncio.to_thread((self.root / "leases" / holder).unlink, True)

    def layer_dir(self, diff_id: str) -> Path:
        return self.root / "layers" / diff_id.split(":", 1)[1]

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / digest.split(":", 1)[1]

    # -- pulling ---------------------------------------------------------------------------------

    async def pull(self, ref: str, *, auth: list[RegistryAuth]) -> Image:
        """Pull `ref` from its registry; concurrent pulls of one ref share one."""
        ref = reference.normalise(ref)
        if ref in self._pulls:
            return await asyncio.shield(self._pulls[ref])
        future: asyncio.Future[Image] = asyncio.get_running_loop().create_future()
        self._pulls[ref] = future
        try:
            image = await self._pull(reference.parse(ref), auth)
            future.set_result(image)
            return image
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # marked retrieved: nobody else may be waiting
            raise
        finally:
            del self._pulls[ref]

    async def _pull(self, ref: reference.Reference, auth: list[RegistryAuth]) -> Image:
        ssl_context: ssl.SSLContext | bool = True
        if self._ca_file:
            ssl_context = ssl.create_default_context(cafile=self._ca_file)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            client = RegistryClient(session, ssl_context=ssl_context, insecure=self._insecure)
            media_type, body, digest = await client.manifest(ref, ref.object, auth)
            doc = _json(body, f"manifest of {ref}")
            media_type = media_type if media_type in oci.INDEX_TYPES | oci.MANIFEST_TYPES \
                else oci.media_type_of(doc)
            if media_type in oci.INDEX_TYPES:
                chosen = oci.pick_platform(doc)
                if chosen is None:
                    raise ImagePullError(f"{ref}: no image for linux/{oci.host_arch()}")
                media_type, body, digest = await client.manifest(ref, chosen["digest"], auth)
                doc = _json(body, f"manifest of {ref}")
            if media_type not in oci.MANIFEST_TYPES and doc.get("schemaVersion") != 2:
                raise ImagePullError(f"{ref}: unsupported manifest type {media_type!r}")
            config_digest = doc["config"]["digest"]
            if not self.blob_path(config_digest).exists():
                config = await client.blob_bytes(ref, config_digest, auth)
                await asyncio.to_thread(_write_atomic, self.blob_path(config_digest), config)
            config_doc = _json(await asyncio.to_thread(self.blob_path(config_digest).read_bytes),
                               "image config")
            diff_ids = config_doc.get("rootfs", {}).get("diff_ids", [])
            layers = doc.get("layers", [])
            if len(diff_ids) != len(layers):
                raise ImagePullError(f"{ref}: config names {len(diff_ids)} layers, "
                                     f"manifest {len(layers)}")
            await asyncio.gather(*(self._fetch_layer(client, ref, layer, diff_id, auth)
                                   for layer, diff_id in zip(layers, diff_ids, strict=True)))
        await asyncio.to_thread(_write_atomic, self.blob_path(digest), body)
        size = len(body) + doc["config"].get("size", 0) + sum(x.get("size", 0) for x in layers)
        await self._add_image(digest, config_digest, [x["digest"] for x in layers], diff_ids,
                              size, [str(ref)])
        image = await self.get(str(ref))
        assert image is not None
        return image

    async def _fetch_layer(self, client: RegistryClient, ref: reference.Reference,
                           layer: dict[str, Any], diff_id: str, auth: list[RegistryAuth]) -> None:
        blob = self.blob_path(layer["digest"])
        if not blob.exists():
            tmp = self.root / "tmp" / uuid.uuid4().hex
            try:
                async with self._downloads:
                    await client.blob_to_file(ref, layer["digest"], tmp, auth)
                await asyncio.to_thread(os.replace, tmp, blob)
            finally:
                tmp.unlink(missing_ok=True)
        await self._unpack_once(diff_id, lambda: blob.open("rb"))

    async def _unpack_once(self, diff_id: str, opener: Callable[[], Any]) -> None:
        if diff_id in self._unpacks:
            return await asyncio.shield(self._unpacks[diff_id])
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._unpacks[diff_id] = future
        try:
            await asyncio.to_thread(self._unpack, diff_id, opener)
            future.set_result(None)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        finally:
            del self._unpacks[diff_id]

    # -- work done in threads ------------------------------------------------------------------

    def _unpack(self, diff_id: str, opener: Callable[[], Any]) -> None:
        target = self.layer_dir(diff_id)
        if target.exists():
            return
        tmp = self.root / "tmp" / f"layer-{uuid.uuid4().hex}"
        try:
            with opener() as f:
                got = unpack_layer(f, tmp)
            if got != diff_id:
                raise ImagePullError(f"layer has diff id {got}, the image config says {diff_id}")
            try:
                os.rename(tmp, target)
            except OSError:
                if not target.exists():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def _import_archive(self, path: Path, tag: str | None) -> list[Image]:
        try:
            tar = tarfile.open(path, "r:*")
        except (OSError, tarfile.TarError) as exc:
            raise ImageError(f"cannot read image archive {path}: {exc}") from exc
        with tar:
            archived = read_archive(tar)
            if tag is not None and len(archived) != 1:
                raise ImageError(f"--tag needs an archive with one image, {path} has "
                                 f"{len(archived)}")
            return [self._import_one(item, tag) for item in archived]

    def _import_one(self, item: ArchivedImage, tag: str | None) -> Image:
        names = [reference.normalise(n) for n in item.names]
        if tag is not None:
            names = [reference.normalise(tag)]
        if not names:
            raise ImageError(f"the archive names its image only by tag {item.tags_only}; "
                             "give it a name with --tag")
        config_digest = oci.sha256_digest(item.config)
        _write_atomic(self.blob_path(config_digest), item.config)
        diff_ids = json.loads(item.config).get("rootfs", {}).get("diff_ids", [])
        if len(diff_ids) != len(item.layers):
            raise ImageError("image config and archive disagree on the number of layers")
        descriptors = []
        for layer, diff_id in zip(item.layers, diff_ids, strict=True):
            digest, size = self._copy_blob(layer.open)
            if layer.digest and layer.digest != digest:
                raise ImageError(f"layer {layer.digest} in the archive does not match its digest")
            self._unpack(diff_id, lambda d=digest: self.blob_path(d).open("rb"))
            descriptors.append({"mediaType": layer.media_type, "digest": digest, "size": size})
        manifest = item.manifest or json.dumps({
            "schemaVersion": 2, "mediaType": oci.DOCKER_MANIFEST,
            "config": {"mediaType": oci.DOCKER_CONFIG, "digest": config_digest,
                       "size": len(item.config)},
            "layers": descriptors}).encode()
        digest = oci.sha256_digest(manifest)
        _write_atomic(self.blob_path(digest), manifest)
        size = len(manifest) + len(item.config) + sum(d["size"] for d in descriptors)
        entry = {"config": config_digest, "layers": [d["digest"] for d in descriptors],
                 "diff_ids": diff_ids, "size": size}

        def change(index: Index) -> None:
            index["images"][digest] = entry
            for name in names:
                index["refs"][name] = digest
        self._locked_update(change)
        index = self._read_index()
        return self._image(index, digest, names[0] if names else None)

    def _copy_blob(self, opener: Callable[[], Any]) -> tuple[str, int]:
        tmp = self.root / "tmp" / uuid.uuid4().hex
        sha = hashlib.sha256()
        size = 0
        try:
            with opener() as src, tmp.open("wb") as out:
                while chunk := src.read(1 << 20):
                    sha.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            digest = "sha256:" + sha.hexdigest()
            os.replace(tmp, self.blob_path(digest))
        finally:
            tmp.unlink(missing_ok=True)
        return digest, size

    def _image(self, index: Index, digest: str, name: str | None) -> Image:
        entry = index["images"][digest]
        tags = tuple(sorted(r for r, d in index["refs"].items() if d == digest))
        config = json.loads(self.blob_path(entry["config"]).read_bytes()).get("config") or {}
        return Image(
            ref=name or (tags[0] if tags else digest), digest=digest,
            config_digest=entry["config"], size=entry["size"],
            entrypoint=tuple(config.get("Entrypoint") or ()), cmd=tuple(config.get("Cmd") or ()),
            env=tuple(config.get("Env") or ()), working_dir=config.get("WorkingDir") or "",
            user=config.get("User") or "", repo_tags=tags)

    def _lookup(self, index: Index, ref: str) -> tuple[str, str] | None:
        """(normalised name, manifest digest) of `ref`: a reference, or a bare image id/digest."""
        if _BARE_DIGEST.fullmatch(ref):
            for digest, entry in index["images"].items():
                if ref in (digest, entry["config"]):
                    return ref, digest
            return None
        parsed = reference.parse(ref)
        name = str(parsed)
        if parsed.digest:
            return (name, parsed.digest) if parsed.digest in index["images"] else None
        digest = index["refs"].get(name)
        return (name, digest) if digest in index["images"] else None

    def _leased_manifests(self) -> set[str]:
        return {doc["manifest"] for doc in self._leases()}

    def _leases(self) -> Iterator[dict[str, Any]]:
        for path in (self.root / "leases").iterdir():
            with contextlib.suppress(OSError, ValueError):
                yield json.loads(path.read_bytes())

    def _sweep(self) -> int:
        """Delete blobs and layers no image or lease refers to; returns bytes freed."""
        with self._lock():
            index = self._read_index()
            blobs = {digest for digest in index["images"]}
            layers: set[str] = set()
            for entry in index["images"].values():
                blobs.add(entry["config"])
                blobs.update(entry["layers"])
                layers.update(entry["diff_ids"])
            for lease in self._leases():
                layers.update(lease["diff_ids"])
            freed = 0
            for blob in (self.root / "blobs" / "sha256").iterdir():
                if f"sha256:{blob.name}" not in blobs:
                    freed += blob.stat().st_size
                    blob.unlink()
            for layer in (self.root / "layers").iterdir():
                if f"sha256:{layer.name}" not in layers:
                    freed += _du(layer)
                    shutil.rmtree(layer)
            return freed

    async def _add_image(self, digest: str, config: str, layers: list[str], diff_ids: list[str],
                         size: int, names: list[str]) -> None:
        entry = {"config": config, "layers": layers, "diff_ids": diff_ids, "size": size}

        def change(index: Index) -> None:
            index["images"][digest] = entry
            for name in names:
                index["refs"][name] = digest
        await self._update(change)

    async def _update(self, change: Callable[[Index], None]) -> None:
        await asyncio.to_thread(self._locked_update, change)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with (self.root / "lock").open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    def _locked_update(self, change: Callable[[Index], None]) -> None:
        with self._lock():
            index = self._read_index()
            change(index)
            _write_atomic(self.root / "index.json", json.dumps(index, indent=1).encode())

    def _read_index(self) -> Index:
        try:
            index = json.loads((self.root / "index.json").read_bytes())
        except FileNotFoundError:
            return {"refs": {}, "images": {}}
        return index


def _json(body: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise ImagePullError(f"{what} is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ImagePullError(f"{what} is not a JSON object")
    return doc


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _du(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total
