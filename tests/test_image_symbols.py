"""dkms/scripts/esca_image_symbols.py on the real Debian kernel images of this
root: every kernel the test matrix installs (scripts/kernels, the cloud
flavour included), so each compression (XZ 6.1, ZSTD 6.12 and 7.x, LZ4 cloud
6.1) and each kallsyms layout Debian ships (6.1 with kallsyms_seqs_of_names
before the token table, 6.12 with the offsets after it and absolute percpu,
7.x with place-relative offsets) is read on both Debian releases
(`scripts/test --release trixie tests/test_image_symbols.py`).  What the
reader finds is checked against what the image says independently: every
__ksymtab export, the syscall table's slots, and the kernel's config (its
compression, IBT).  Tampered images must be refused, naming what is wrong.
"""

from __future__ import annotations

import gzip
import re
import struct
import subprocess
import sys
from pathlib import Path

import esca_vm as vm
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "dkms" / "scripts" / "esca_image_symbols.py"
ABI = REPO / "dkms" / "include" / "uapi" / "esca_abi.h"


eis = vm.image_symbols_reader()


def _images() -> list[Path]:
    return sorted(p for p in Path("/boot").glob("vmlinuz-*") if p.is_file())


IMAGES = _images()


def _config(image: Path) -> dict[str, str]:
    return vm.kernel_config(vm.Kernel(image.name.removeprefix("vmlinuz-")))


def _slots() -> list[str]:
    """handler@nr of the module's allowlist and waits (what the build asks)."""
    calls = re.findall(r"^\s*X\(\s*(\d+),\s*(\w+)\)", ABI.read_text(), re.M)
    assert len(calls) >= 12, calls
    return [f"{vm.handler_symbol(n)}@{nr}" for nr, n in calls]


COMPRESSION = {
    "CONFIG_KERNEL_GZIP": "gzip",
    "CONFIG_KERNEL_XZ": "xz",
    "CONFIG_KERNEL_ZSTD": "zstd",
    "CONFIG_KERNEL_LZ4": "lz4",
}


def test_images_installed() -> None:
    assert IMAGES, "no /boot/vmlinuz-*: scripts/test installs the matrix's kernels"


@pytest.fixture(scope="module", params=IMAGES, ids=[p.name for p in IMAGES])
def image(request: pytest.FixtureRequest) -> Path:
    return request.param


@pytest.fixture(scope="module")
def report(image: Path) -> object:
    return eis.resolve(image.read_bytes(), ["kfree", "sys_call_table", *_slots()])


def test_compression_and_layout(image: Path, report: object) -> None:
    config = _config(image)
    wanted = [name for opt, name in COMPRESSION.items() if config.get(opt) == "y"]
    assert [report.compression] == wanted
    release = image.name.removeprefix("vmlinuz-")
    major, minor = (int(x) for x in re.match(r"(\d+)\.(\d+)", release).groups())
    if (major, minor) < (6, 2):
        assert "seqs_of_names, token table" in report.layout
    else:
        assert "token table, token index, offsets" in report.layout
    if config.get("CONFIG_KALLSYMS_ABSOLUTE_PERCPU") == "y":
        assert report.layout.endswith("absolute percpu")
    else:
        assert not report.layout.endswith("absolute percpu")
    print(f"{image.name}: {report.compression}, {report.layout}, {report.seconds:.1f} s")


def test_exports_and_slots_cross_checked(report: object) -> None:
    assert report.exports > 5000
    assert report.slots == len(_slots())
    assert report.symbols > 50000
    names = [line.split()[2] for line in report.lines]
    assert names[:2] == ["kfree", "sys_call_table"]
    for line in report.lines:
        addr, kind, _ = line.split()
        assert int(addr, 16) >> 48 == 0xFFFF and kind in "TtDdRr"


def test_sealed_functions_match_ibt(image: Path, report: object) -> None:
    """An IBT kernel seals thousands of functions, kallsyms_lookup_name among
    them (what the old kprobe path called); none that the module calls."""
    if _config(image).get("CONFIG_X86_KERNEL_IBT") == "y":
        assert report.sealed > 1000
        with pytest.raises(eis.ImageError, match="kallsyms_lookup_name is sealed"):
            eis.resolve(image.read_bytes(), ["kfree"], sealed_check=["kallsyms_lookup_name"])
        with pytest.raises(eis.ImageError, match="kallsyms_lookup_name is sealed"):
            eis.resolve(image.read_bytes(), ["kallsyms_lookup_name"])
    else:
        assert report.sealed == 0


# --- tampered and foreign images ------------------------------------------------


@pytest.fixture(scope="module")
def vmlinux() -> bytes:
    return eis.extract_vmlinux(IMAGES[0].read_bytes())[1]


def _patched(data: bytes, off: int, new: bytes) -> bytes:
    return data[:off] + new + data[off + len(new) :]


def test_tampered_export_refused(vmlinux: bytes) -> None:
    elf = eis.Elf(vmlinux)
    sec = elf.section("__ksymtab")
    entry = sec.offset + 12 * 100
    (value,) = struct.unpack_from("<i", vmlinux, entry)
    bad = _patched(vmlinux, entry, struct.pack("<i", value + 16))
    with pytest.raises(eis.ImageError, match=r"export \S+: __ksymtab says"):
        eis.resolve(bad, ["kfree"])


def test_tampered_syscall_slot_refused(vmlinux: bytes) -> None:
    ks = eis.read_kallsyms(eis.Elf(vmlinux))
    table = ks.lookup("sys_call_table")
    rod = eis.Elf(vmlinux).section(".rodata")
    slot = rod.offset + table - rod.addr + 8 * 3  # close
    bad = _patched(vmlinux, slot, struct.pack("<Q", ks.lookup("__x64_sys_write")))
    eis.resolve(vmlinux, ["__x64_sys_close@3"])
    with pytest.raises(eis.ImageError, match=r"slot 3 of the image's sys_call_table holds"):
        eis.resolve(bad, ["__x64_sys_close@3"])


def test_gzip_payload(tmp_path: Path) -> None:
    """Debian's amd64 flavours use no gzip, other architectures and custom
    kernels do: the same image with its payload recompressed reads the same."""
    image = IMAGES[0].read_bytes()
    compression, vmlinux = eis.extract_vmlinux(image)
    setup_sects = image[0x1F1] or 4
    offset, length = struct.unpack_from("<II", image, 0x248)
    start = (setup_sects + 1) * 512 + offset
    gz = gzip.compress(vmlinux, compresslevel=1)
    rebuilt = image[:start] + gz + image[start + length :]
    rebuilt = _patched(rebuilt, 0x24C, struct.pack("<I", len(gz)))
    want = eis.resolve(image, ["kfree", "sys_call_table"]).lines
    got = eis.resolve(rebuilt, ["kfree", "sys_call_table"])
    assert got.compression == "gzip" and got.lines == want
    assert compression != "gzip"


def test_not_an_image() -> None:
    with pytest.raises(eis.ImageError, match="not an x86 bzImage"):
        eis.resolve(b"\0" * 4096, ["kfree"])
    with pytest.raises(eis.ImageError, match="unknown compression"):
        eis.decompress(b"BZh91AY&SY")


def test_missing_tool_names_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(eis.ImageError, match="zstd is not installed: apt-get install zstd"):
        eis.decompress(b"\x28\xb5\x2f\xfd" + b"\0" * 64)
    with pytest.raises(eis.ImageError, match="lz4 is not installed: apt-get install lz4"):
        eis.decompress(b"\x02\x21\x4c\x18" + b"\0" * 64)


def test_command_line(tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, SCRIPT, "--stats", IMAGES[0], "kfree", "__x64_sys_close@3"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert re.fullmatch(r"[0-9a-f]{16} T kfree\n[0-9a-f]{16} T __x64_sys_close\n", ok.stdout)
    assert "exports cross-checked" in ok.stderr
    junk = tmp_path / "junk"
    junk.write_bytes(b"junk" * 100)
    bad = subprocess.run(
        [sys.executable, SCRIPT, junk, "kfree"], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 1 and not bad.stdout
    assert "not an x86 bzImage" in bad.stderr


# --- the build's generator (dkms/scripts/esca-symbols.sh) -----------------------


def _generate(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    release = IMAGES[0].name.removeprefix("vmlinuz-")
    out = tmp_path / "generated" / "esca_symbols.h"
    res = subprocess.run(
        ["sh", REPO / "dkms" / "scripts" / "esca-symbols.sh", release, ABI, out],
        env={"PATH": "/usr/bin:/bin", "ESCA_SYSTEM_MAP": "none", **env},
        capture_output=True,
        text=True,
        check=False,
    )
    return res, out


def test_generator_uses_the_image_and_refuses_a_tampered_one(
    tmp_path: Path, vmlinux: bytes
) -> None:
    good = tmp_path / "vmlinux"
    good.write_bytes(vmlinux)
    res, out = _generate(tmp_path, ESCA_KERNEL_IMAGE=str(good))
    assert res.returncode == 0, res.stderr
    header = out.read_text()
    assert '#define ESCA_SYMBOLS_SOURCE "image"' in header
    assert f'#define ESCA_SYMBOLS_FILE "{good}"' in header
    assert "#define ESCA_MAP_HANDLER_close 0x" in header
    out.unlink()

    sec = eis.Elf(vmlinux).section("__ksymtab")
    entry = sec.offset + 12 * 7
    (value,) = struct.unpack_from("<i", vmlinux, entry)
    bad = tmp_path / "vmlinux-bad"
    bad.write_bytes(_patched(vmlinux, entry, struct.pack("<i", value + 32)))
    res, out = _generate(tmp_path, ESCA_KERNEL_IMAGE=str(bad))
    assert res.returncode == 1 and not out.exists()
    assert re.search(r"export \S+: __ksymtab says", res.stderr), res.stderr
    assert "cannot be trusted" in res.stderr


def test_generator_without_symbols(tmp_path: Path) -> None:
    """Neither map nor image: the kprobe path, unless the kernel has IBT."""
    res, out = _generate(tmp_path, ESCA_KERNEL_IMAGE="none")
    assert res.returncode == 0 and "will use the kprobe path" in res.stderr
    assert "#define ESCA_SYMBOLS_HAVE_MAP 0" in out.read_text()
    out.unlink()
    res, out = _generate(tmp_path, ESCA_KERNEL_IMAGE="none", ESCA_IBT="y")
    assert res.returncode == 1 and not out.exists()
    assert "CONFIG_X86_KERNEL_IBT" in res.stderr and "install linux-image-" in res.stderr
