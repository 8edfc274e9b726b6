"""Does a binary carry the ESCA hooks?  Read from its dynamic symbol table.

A patched server references esca_init, batch_start and a flush hook --
batch_flush_wait (the flush with the next epoll wait, what the project's
patches use) or batch_flush -- as undefined (normally weak) dynamic symbols,
resolved at run time by the preloaded libesca.  The table is read directly
from the ELF file (64-bit little-endian: x86-64, arm64), so esca-run needs no
binutils on a server.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from pathlib import Path

#: every hook libesca defines
HOOKS = ("esca_init", "batch_start", "batch_flush", "batch_flush_wait")
#: a hooked binary references these ...
REQUIRED = ("esca_init", "batch_start")
#: ... and at least one of these
FLUSHES = ("batch_flush", "batch_flush_wait")

_SHT_DYNSYM = 11
_STB_GLOBAL = 1
_STB_WEAK = 2
_SHN_UNDEF = 0


class ElfError(Exception):
    pass


@dataclass(frozen=True)
class DynSymbol:
    name: str
    binding: int
    defined: bool

    @property
    def weak(self) -> bool:
        return self.binding == _STB_WEAK


def dynamic_symbols(path: Path) -> dict[str, DynSymbol]:
    """Name -> symbol of the .dynsym section of an ELF64 little-endian file."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ElfError(f"cannot read {path}: {e.strerror}") from None
    if data[:4] != b"\x7fELF":
        raise ElfError(f"{path} is not an ELF file")
    if data[4] != 2 or data[5] != 1:
        raise ElfError(f"{path} is not a 64-bit little-endian ELF file")
    try:
        (shoff,) = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
        sections = [
            struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)
        ]
        symbols: dict[str, DynSymbol] = {}
        for sh in sections:
            if sh[1] != _SHT_DYNSYM:
                continue
            offset, size, link, entsize = sh[4], sh[5], sh[6], sh[9] or 24
            stroff = sections[link][4]
            for i in range(1, size // entsize):
                st_name, st_info, _other, st_shndx, _value, _size = struct.unpack_from(
                    "<IBBHQQ", data, offset + i * entsize
                )
                end = data.index(b"\0", stroff + st_name)
                name = data[stroff + st_name : end].decode(errors="replace")
                symbols[name] = DynSymbol(name, st_info >> 4, st_shndx != _SHN_UNDEF)
        return symbols
    except (struct.error, IndexError, ValueError) as e:
        raise ElfError(f"{path}: malformed ELF section table ({e})") from None


class HookState(enum.Enum):
    HOOKED = "hooked"  # init, start and a flush referenced, undefined: resolved by libesca
    NONE = "none"  # not a patched build
    PARTIAL = "partial"  # some of the hooks only
    DEFINES = "defines"  # defines the hooks itself (libesca, or a stub)


def hook_state(path: Path) -> tuple[HookState, list[str]]:
    """The binary's hook state and the hooks it references (undefined)."""
    syms = dynamic_symbols(path)
    present = [h for h in HOOKS if h in syms]
    if any(syms[h].defined for h in present):
        return HookState.DEFINES, present
    if all(h in present for h in REQUIRED) and any(h in present for h in FLUSHES):
        return HookState.HOOKED, present
    if present:
        return HookState.PARTIAL, present
    return HookState.NONE, present


def defined_hooks(library: Path) -> set[str]:
    """The hooks library exports (libesca: all of HOOKS; an older one lacks
    batch_flush_wait)."""
    syms = dynamic_symbols(library)
    return {
        h
        for h in HOOKS
        if h in syms and syms[h].defined and syms[h].binding in (_STB_GLOBAL, _STB_WEAK)
    }


def defines_hooks(library: Path) -> bool:
    """True when library exports the hooks every hooked binary needs (as
    libesca does): esca_init, batch_start, batch_flush."""
    return {*REQUIRED, "batch_flush"} <= defined_hooks(library)
