"""`build_image_archive`: busybox plus a directory, as the demo's images are built."""

from __future__ import annotations

from pathlib import Path

from kubelite.runtime.build import build_image_archive
from kubelite.runtime.images import OCIImageStore


async def test_an_image_of_busybox_and_a_directory(root: Path, tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    (context / "www" / "cgi-bin").mkdir(parents=True)
    script = context / "www" / "cgi-bin" / "index.cgi"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    out = tmp_path / "web.tar"
    digest = build_image_archive(out, tag="kubelite.local/web:1", context=context,
                                 cmd=["httpd", "-f", "-p", "8080", "-h", "/www"],
                                 env=["VERSION=1"], workdir="/www", ports=["8080"])
    again = tmp_path / "again.tar"
    assert build_image_archive(again, tag="kubelite.local/web:1", context=context,
                               cmd=["httpd", "-f", "-p", "8080", "-h", "/www"],
                               env=["VERSION=1"], workdir="/www", ports=["8080"]) == digest
    store = OCIImageStore(root)
    [image] = await store.import_archive(str(out))
    assert image.ref == "kubelite.local/web:1"
    assert image.cmd == ("httpd", "-f", "-p", "8080", "-h", "/www")
    assert "VERSION=1" in image.env and image.working_dir == "/www"
    base, top = await store.lease("probe", image)
    assert Path(base, "bin/busybox").is_file()
    unpacked = Path(top, "www/cgi-bin/index.cgi")
    assert unpacked.read_text() == "#!/bin/sh\necho hi\n"
    assert unpacked.stat().st_mode & 0o777 == 0o755
    assert unpacked.stat().st_uid == 0
