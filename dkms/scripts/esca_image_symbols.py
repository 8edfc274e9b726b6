#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-only
"""Symbols of a Debian kernel from its own image, for the esca module's build.

    esca_image_symbols.py [--sealed-check NAME,...] [--stats] IMAGE SYMBOL[@NR]...

IMAGE is the kernel a module is built for (/boot/vmlinuz-<release>: an x86
bzImage whose payload is gzip, xz, zstd or lz4, or a plain vmlinux ELF).  The
kernel keeps its own symbol table in .rodata (kallsyms, all symbols with
CONFIG_KALLSYMS_ALL); this reads it, checks it, and prints the SYMBOLs as
System.map lines ("<address> <type> <name>", link-time addresses) for
scripts/esca-symbols.sh, which treats them as a map.

Nothing is trusted unchecked: every export of the image's __ksymtab and
__ksymtab_gpl (an address and a name the kernel's linker wrote, independent
of kallsyms) must have the address kallsyms gives its name, and every
SYMBOL@NR must be what slot NR of the image's sys_call_table holds.  Any
mismatch is an error naming it, and nothing is printed.

With CONFIG_X86_KERNEL_IBT the kernel overwrites, at boot, the ENDBR64 of
every function listed in the image's .ibt_endbr_seal: an indirect call to one
of them faults on an IBT-enforcing CPU.  Every SYMBOL that is a function, and
every name of --sealed-check, must not be sealed, or the run fails naming it.

Layouts read (scripts/kallsyms.c of the kernel): the markers either right
before the token table (6.12 and later) or before kallsyms_seqs_of_names
(6.1); the offsets either before kallsyms_num_syms (6.1) or after the token
index (6.12 and later); percpu symbols absolute (CONFIG_KALLSYMS_ABSOLUTE_PERCPU,
up to 6.14) or every offset relative to kallsyms_relative_base (6.15 on).

Needs: python3; zstd for zstd images, lz4 for lz4 images.  Exit status 0 on
success, 1 on an error (one line on stderr saying which check failed), 2 on
bad usage.
"""

from __future__ import annotations

import argparse
import dataclasses
import lzma
import re
import shutil
import struct
import subprocess
import sys
import time
import zlib
from array import array
from collections.abc import Sequence

ENDBR64 = b"\xf3\x0f\x1e\xfa"
#: names longer than this do not exist (KSYM_NAME_LEN is 512 since 6.1)
MAX_NAME = 512


class ImageError(Exception):
    """The image cannot be read, or what it says does not add up."""


# --- the image ------------------------------------------------------------------


#: magic -> (name, the Debian package of the tool, or "" for the stdlib)
COMPRESSIONS = {
    b"\x1f\x8b": ("gzip", ""),
    b"\xfd7zXZ\x00": ("xz", ""),
    b"\x28\xb5\x2f\xfd": ("zstd", "zstd"),
    b"\x02\x21\x4c\x18": ("lz4", "lz4"),
}


def _run_tool(argv: list[str], data: bytes, package: str) -> bytes:
    if shutil.which(argv[0]) is None:
        raise ImageError(f"{argv[0]} is not installed: apt-get install {package}")
    proc = subprocess.run(argv, input=data, capture_output=True, check=False)
    # A bzImage's payload ends with the 4-byte decompressed size (the
    # kernel's size_append); the tools may call that trailing garbage.
    if not proc.stdout.startswith(b"\x7fELF"):
        msg = proc.stderr.decode(errors="replace").strip()
        raise ImageError(f"{argv[0]} could not decompress the image: {msg}")
    return proc.stdout


def decompress(payload: bytes) -> tuple[str, bytes]:
    """(compression, vmlinux) of a bzImage's payload."""
    for magic, (name, package) in COMPRESSIONS.items():
        if not payload.startswith(magic):
            continue
        if name == "gzip":
            return name, zlib.decompressobj(wbits=31).decompress(payload)
        if name == "xz":
            return name, lzma.LZMADecompressor().decompress(payload)
        if name == "zstd":
            return name, _run_tool(["zstd", "-dcq"], payload[:-4], package)
        return name, _run_tool(["lz4", "-dcq"], payload[:-4], package)
    raise ImageError(f"unknown compression of the kernel payload (magic {payload[:6].hex()})")


def extract_vmlinux(image: bytes) -> tuple[str, bytes]:
    """(compression, vmlinux ELF) of an x86 bzImage (or of a vmlinux itself)."""
    if image.startswith(b"\x7fELF"):
        return "none", image
    if len(image) < 0x250 or image[0x202:0x206] != b"HdrS":
        raise ImageError("not an x86 bzImage (no HdrS setup header) nor an ELF vmlinux")
    setup_sects = image[0x1F1] or 4
    payload_offset, payload_length = struct.unpack_from("<II", image, 0x248)
    start = (setup_sects + 1) * 512 + payload_offset
    payload = image[start : start + payload_length]
    if len(payload) != payload_length or not payload_length:
        raise ImageError("the bzImage's payload lies outside the file")
    compression, vmlinux = decompress(payload)
    if not vmlinux.startswith(b"\x7fELF"):
        raise ImageError(f"the {compression} payload is not an ELF vmlinux")
    return compression, vmlinux


@dataclasses.dataclass(frozen=True)
class Section:
    name: str
    addr: int
    offset: int
    size: int


class Elf:
    """The sections of a 64-bit little-endian vmlinux (symbols are stripped)."""

    def __init__(self, data: bytes) -> None:
        if data[4] != 2 or data[5] != 1:
            raise ImageError("the vmlinux is not a 64-bit little-endian ELF")
        self.data = data
        (shoff,) = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
        raw = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
        strtab = raw[shstrndx][4]
        self.sections: dict[str, Section] = {}
        for name_off, sh_type, _flags, addr, offset, size in raw:
            end = data.index(b"\0", strtab + name_off)
            name = data[strtab + name_off : end].decode()
            if sh_type != 8:  # not NOBITS: the bytes are in the file
                self.sections[name] = Section(name, addr, offset, size)

    def section(self, name: str) -> Section:
        if name not in self.sections:
            raise ImageError(f"the vmlinux has no {name} section")
        return self.sections[name]

    def bytes_of(self, name: str) -> bytes:
        s = self.section(name)
        return self.data[s.offset : s.offset + s.size]

    def read(self, addr: int, size: int) -> bytes:
        """size bytes at link-time address addr."""
        for s in self.sections.values():
            if s.addr and s.addr <= addr and addr + size <= s.addr + s.size:
                off = s.offset + addr - s.addr
                return self.data[off : off + size]
        raise ImageError(f"address {addr:#x} is in no section of the vmlinux")


# --- kallsyms -------------------------------------------------------------------


@dataclasses.dataclass
class Kallsyms:
    """The kernel's symbol table: names with their type letter, addresses."""

    names: list[str]
    types: list[str]
    addrs: list[int]
    layout: str

    def __post_init__(self) -> None:
        self.by_name: dict[str, list[int]] = {}
        for name, addr in zip(self.names, self.addrs, strict=True):
            self.by_name.setdefault(name, []).append(addr)

    def lookup(self, name: str) -> int:
        addrs = self.by_name.get(name, [])
        if len(set(addrs)) != 1:
            what = "no" if not addrs else f"{len(set(addrs))} different"
            raise ImageError(f"kallsyms of the image has {what} addresses for {name}")
        return addrs[0]


def _u32s(data: bytes, off: int, count: int) -> array[int]:
    words = array("I")
    words.frombytes(data[off : off + 4 * count])
    if sys.byteorder != "little":
        words.byteswap()
    return words


def _align8(n: int) -> int:
    return (n + 7) & ~7


def _token_table(rod: bytes) -> tuple[int, list[bytes], int]:
    """(start, tokens, start of kallsyms_token_index) in .rodata.

    Single characters are their own tokens, so the table holds "0\\0" ... "9\\0"
    at indices 0x30..0x39, one after the other; kallsyms_token_index (the 256
    offsets into the table) follows the table."""
    digits = b"".join(bytes([c]) + b"\0" for c in b"0123456789")
    for m in re.finditer(re.escape(digits), rod):
        p = m.start() - 1
        for _ in range(0x30):
            q = rod.rfind(b"\0", 0, p)
            if q < 0 or p - q < 2:  # an empty token: not the table
                break
            p = q
        else:
            start = p + 1
            offsets, tokens, q = [], [], start
            for _ in range(256):
                end = rod.index(b"\0", q)
                offsets.append(q - start)
                tokens.append(rod[q:end])
                q = end + 1
            if max(offsets) >= 1 << 16:
                continue
            index = struct.pack("<256H", *offsets)
            for pad in range(8):
                if rod[q + pad : q + pad + 512] == index:
                    return start, tokens, q + pad
    raise ImageError("no kallsyms token table in the image's .rodata (CONFIG_KALLSYMS=n?)")


def _markers_before(rod: bytes, end: int, limit: int) -> list[tuple[int, array[int]]]:
    """Candidate kallsyms_markers arrays (4-aligned, first entry 0, strictly
    increasing by at least 256 bytes per 256 names) that end at most limit
    bytes before end, nearest first: (start, markers)."""
    found = []
    lo = max(0, end - limit) & ~7
    words = _u32s(rod, lo, (end - lo) // 4)
    for i in range(len(words) - 2, -1, -1):
        if words[i] != 0 or not 256 <= words[i + 1] <= 256 * (MAX_NAME + 2):
            continue
        j = i + 1
        while j + 1 < len(words) and 256 <= words[j + 1] - words[j] <= 256 * (MAX_NAME + 2):
            j += 1
        found.append((lo + 4 * i, words[i : j + 1]))
    return found


def _decode_names(
    rod: bytes, start: int, count: int, tokens: list[bytes]
) -> tuple[list[bytes], list[int]]:
    """count compressed names from start: (expanded names, offset of each)."""
    names, offsets, p = [], [], start
    for _ in range(count):
        offsets.append(p - start)
        n = rod[p]
        p += 1
        if n & 0x80:  # ULEB128, two bytes (6.1 on)
            n = (n & 0x7F) | (rod[p] << 7)
            p += 1
        if not n or n > MAX_NAME:
            raise ImageError("bad name length")
        names.append(b"".join(tokens[b] for b in rod[p : p + n]))
        p += n
    offsets.append(p - start)
    return names, offsets


def _padding(rod: bytes, start: int, end: int) -> bool:
    """end follows start after at most 7 bytes of zero padding."""
    return 0 <= end - start < 8 and not any(rod[start:end])


def _names(
    rod: bytes, tokens: list[bytes], m_start: int, markers: array[int]
) -> tuple[int, list[bytes]] | None:
    """(kallsyms_names, the names) that the markers at m_start index: the
    names end right before the markers and start right after kallsyms_num_syms
    (with or without padding), whose count the markers agree with."""
    count_max = 256 * len(markers)
    hi = m_start - markers[-1]
    for start in range(hi & ~3, max(8, hi - 256 * (MAX_NAME + 2)), -4):
        for num_at in (start - 4, start - 8):
            (num,) = struct.unpack_from("<I", rod, num_at)
            if not count_max - 256 < num <= count_max or not _padding(rod, num_at + 4, start):
                continue
            try:
                names, offsets = _decode_names(rod, start, num, tokens)
            except (ImageError, IndexError):
                continue
            if _padding(rod, start + offsets[-1], m_start) and all(
                offsets[256 * k] == markers[k] for k in range(len(markers))
            ):
                return start, names
    return None


def read_kallsyms(elf: Elf) -> Kallsyms:
    rod = elf.bytes_of(".rodata")
    rod_addr = elf.section(".rodata").addr
    text = elf.section(".text").addr
    t_start, tokens, t_index = _token_table(rod)
    for m_start, markers in _markers_before(rod, t_start, 8 << 20):
        found = _names(rod, tokens, m_start, markers)
        if found is None:
            continue
        names_start, names = found
        num = len(names)
        m_end = m_start + 4 * len(markers)
        candidates: list[tuple[str, int, int | None]] = []
        if _padding(rod, m_end, t_start):
            # 6.12 on: ... kallsyms_token_index, kallsyms_offsets, then
            # kallsyms_relative_base, or not (7.x: each offset is relative
            # to its own place)
            layout = "names, markers, token table, token index, offsets"
            for offsets in (t_index + 512, _align8(t_index + 512)):
                for base in (offsets + 4 * num, _align8(offsets + 4 * num)):
                    candidates.append((layout, offsets, base))
                candidates.append((layout, offsets, None))
        elif _padding(rod, m_end + 3 * num, t_start) or _padding(
            rod, _align8(m_end) + 3 * num, t_start
        ):
            # 6.1: kallsyms_offsets, kallsyms_relative_base, kallsyms_num_syms,
            # ..., kallsyms_seqs_of_names, kallsyms_token_table
            layout = "offsets, names, markers, seqs_of_names, token table"
            for base in range((names_start - 16) & ~7, names_start - 32, -8):
                for offsets in (base - 4 * num, base - _align8(4 * num)):
                    candidates.append((layout, offsets, base))
        for layout, offsets_at, base_at in candidates:
            ks = _addresses(rod, rod_addr, names, offsets_at, base_at, layout)
            if ks is not None and text in ks.by_name.get("_text", []):
                return ks
    raise ImageError("no consistent kallsyms tables before the token table")


def _addresses(
    rod: bytes,
    rod_addr: int,
    names: list[bytes],
    offsets_at: int,
    base_at: int | None,
    layout: str,
) -> Kallsyms | None:
    num = len(names)
    if offsets_at < 0 or max(offsets_at + 4 * num, (base_at or 0) + 8) > len(rod):
        return None
    raw = _u32s(rod, offsets_at, num)
    signed = array("i", raw.tobytes())
    base = 0 if base_at is None else struct.unpack_from("<Q", rod, base_at)[0]
    if base_at is None:
        place = rod_addr + offsets_at
        addrs = [place + 4 * i + o for i, o in enumerate(signed)]
        layout += ", place-relative"
    elif base >> 63 == 0:
        return None
    elif min(signed) < 0:
        # CONFIG_KALLSYMS_ABSOLUTE_PERCPU (up to 6.14): >= 0 is an absolute
        # percpu offset, the rest is relative to the base, negated
        addrs = [o if o >= 0 else base - 1 - o for o in signed]
        layout += ", absolute percpu"
    else:
        addrs = [base + o for o in raw]
        layout += ", all relative"
    types, plain = [], []
    for n in names:
        types.append(chr(n[0]))
        plain.append(n[1:].decode("ascii", errors="replace"))
    return Kallsyms(plain, types, addrs, layout)


# --- checks ---------------------------------------------------------------------


def ksymtab_exports(elf: Elf) -> dict[str, int]:
    """{name: address} of __ksymtab and __ksymtab_gpl (struct kernel_symbol
    with place-relative offsets, CONFIG_HAVE_ARCH_PREL32_RELOCATIONS)."""
    exports: dict[str, int] = {}
    strings = elf.section("__ksymtab_strings")
    sdata = elf.bytes_of("__ksymtab_strings")
    # 7.x has one __ksymtab (the GPL flag moved to __kflagstab)
    for name in ("__ksymtab", "__ksymtab_gpl"):
        if name not in elf.sections:
            continue
        sec = elf.section(name)
        data = elf.bytes_of(name)
        if sec.size % 12:
            raise ImageError(f"{name} is not a table of 12-byte kernel_symbol entries")
        for off in range(0, sec.size, 12):
            value_off, name_off, _ns = struct.unpack_from("<iii", data, off)
            addr = (sec.addr + off + value_off) & (1 << 64) - 1
            name_addr = sec.addr + off + 4 + name_off - strings.addr
            if not 0 <= name_addr < strings.size:
                raise ImageError(f"{name} entry {off // 12} names no string")
            sym = sdata[name_addr : sdata.index(b"\0", name_addr)].decode()
            exports[sym] = addr
    return exports


def cross_check_exports(ks: Kallsyms, exports: dict[str, int]) -> int:
    if len(exports) < 1000:
        raise ImageError(f"only {len(exports)} exports in __ksymtab: not a Debian kernel image")
    for name, addr in exports.items():
        if addr not in ks.by_name.get(name, []):
            got = ", ".join(f"{a:#x}" for a in ks.by_name.get(name, [])) or "nothing"
            raise ImageError(
                f"export {name}: __ksymtab says {addr:#x}, kallsyms of the image says {got}"
            )
    return len(exports)


def sealed_functions(elf: Elf, ks: Kallsyms) -> dict[int, list[str]]:
    """{address: names} of the functions whose ENDBR64 the kernel seals at boot
    (.ibt_endbr_seal: place-relative 32-bit pointers); empty without IBT."""
    if ".ibt_endbr_seal" not in elf.sections:
        return {}
    sec = elf.section(".ibt_endbr_seal")
    data = elf.bytes_of(".ibt_endbr_seal")
    targets = {
        sec.addr + off + struct.unpack_from("<i", data, off)[0] for off in range(0, sec.size, 4)
    }
    sealed: dict[int, list[str]] = {}
    for name, kind, addr in zip(ks.names, ks.types, ks.addrs, strict=True):
        if addr in targets and kind in "tT":
            sealed.setdefault(addr, []).append(name)
    return sealed


def check_syscall_slots(elf: Elf, ks: Kallsyms, slots: dict[str, int]) -> int:
    """Slot nr of the image's sys_call_table holds name, for each name: nr of
    slots; returns how many were checked."""
    if not slots:
        return 0
    table = ks.lookup("sys_call_table")
    for name, nr in slots.items():
        (held,) = struct.unpack("<Q", elf.read(table + 8 * nr, 8))
        addr = ks.lookup(name)
        if held != addr:
            raise ImageError(
                f"slot {nr} of the image's sys_call_table holds {held:#x}, not {name} ({addr:#x})"
            )
    return len(slots)


@dataclasses.dataclass
class Report:
    compression: str
    layout: str
    symbols: int
    exports: int
    slots: int
    sealed: int
    seconds: float
    lines: list[str]


def parse_symbols(args: Sequence[str]) -> tuple[list[str], dict[str, int]]:
    """SYMBOL[@NR] arguments: (the symbols, once each, in order; {symbol: NR})."""
    symbols: list[str] = []
    slots: dict[str, int] = {}
    for arg in args:
        name, at, nr = arg.partition("@")
        if at:
            if not nr.isdigit() or int(nr) >= 512:
                raise ImageError(f"{arg}: NR must be a syscall number")
            slots[name] = int(nr)
        if name not in symbols:
            symbols.append(name)
    return symbols, slots


def resolve(image: bytes, args: Sequence[str], sealed_check: Sequence[str] = ()) -> Report:
    """Read, check and look up SYMBOL[@NR] arguments in a kernel image."""
    t0 = time.monotonic()
    symbols, slot_of = parse_symbols(args)
    compression, vmlinux = extract_vmlinux(image)
    elf = Elf(vmlinux)
    ks = read_kallsyms(elf)
    exports = cross_check_exports(ks, ksymtab_exports(elf))
    slots = check_syscall_slots(elf, ks, slot_of)
    sealed = sealed_functions(elf, ks)
    lines = []
    for sym in symbols:
        addr = ks.lookup(sym)
        kind = ks.types[ks.names.index(sym)]
        if kind in "tT" and addr in sealed:
            raise ImageError(f"{sym} is sealed (.ibt_endbr_seal): it cannot be called indirectly")
        if kind in "tT" and sealed and elf.read(addr, 4) != ENDBR64:
            raise ImageError(f"{sym} does not start with ENDBR64 in an IBT kernel")
        lines.append(f"{addr:016x} {kind} {sym}")
    for sym in sealed_check:
        addr = ks.lookup(sym)
        if addr in sealed:
            raise ImageError(f"{sym} is sealed (.ibt_endbr_seal): it cannot be called indirectly")
    return Report(
        compression,
        ks.layout,
        len(ks.names),
        exports,
        slots,
        len(sealed),
        time.monotonic() - t0,
        lines,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="esca_image_symbols.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--sealed-check", default="", help="comma-separated names that must not be sealed"
    )
    parser.add_argument("--stats", action="store_true", help="one line of statistics on stderr")
    parser.add_argument("image")
    parser.add_argument("symbols", nargs="+", metavar="SYMBOL[@NR]")
    args = parser.parse_args(argv)
    try:
        with open(args.image, "rb") as fh:
            image = fh.read()
        report = resolve(image, args.symbols, [s for s in args.sealed_check.split(",") if s])
    except OSError as err:
        print(f"esca_image_symbols.py: {args.image}: {err.strerror}", file=sys.stderr)
        return 1
    except ImageError as err:
        print(f"esca_image_symbols.py: {args.image}: {err}", file=sys.stderr)
        return 1
    for line in report.lines:
        print(line)
    if args.stats:
        print(
            f"esca_image_symbols.py: {args.image}: {report.compression}, "
            f"{report.symbols} symbols ({report.layout}), {report.exports} exports "
            f"cross-checked, {report.slots} sys_call_table slots checked, "
            f"{report.sealed} sealed functions (none of the {len(report.lines)} asked), "
            f"{report.seconds:.1f} s",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
