"""Module signatures: whether this kernel refuses esca.ko, and what to do.

A kernel enforces module signatures when booted with module.sig_enforce=1,
under lockdown (Debian's kernels lock down when Secure Boot is on), or built
with CONFIG_MODULE_SIG_FORCE; it then loads only modules signed by a key it
trusts.  DKMS signs the modules it builds with its own key
(/var/lib/dkms/mok.pub and mok.key on Debian 12 and 13, made with openssl on
the first build; mok_certificate in /etc/dkms/framework.conf and
framework.conf.d/ moves it), which the kernel trusts once it is enrolled as
a Machine Owner Key (mokutil --import, then MokManager at the next boot).

`probe()` reads the machine into a `State`; `problem()` decides; `advice()`
words it.  esca-dkms's postinst (shell: it runs where the tool may not be
installed) carries the same text with its own shell variables in place of
the values: `shell_advice()` gives it, and tests/unit/test_signing.py fails,
printing the arms to paste, when debian/esca-dkms.postinst's copy differs.
"""

from __future__ import annotations

import enum
import errno
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from esca_pkg import proc

MODULE = "esca"
SIG_ENFORCE = Path("/sys/module/module/parameters/sig_enforce")
LOCKDOWN = Path("/sys/kernel/security/lockdown")
EFI = Path("/sys/firmware/efi")
SECURE_BOOT_VAR = EFI / "efivars" / "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
DKMS_FRAMEWORK = Path("/etc/dkms/framework.conf")
DKMS_FRAMEWORK_D = Path("/etc/dkms/framework.conf.d")
DEFAULT_KEY = "/var/lib/dkms/mok.pub"
#: what modprobe/insmod print for the kernel's refusals (strerror of
#: EKEYREJECTED: unsigned or unknown key under sig_enforce; ENOKEY: older
#: kernels' unknown key)
KEY_ERRORS = (os.strerror(errno.EKEYREJECTED), os.strerror(errno.ENOKEY))
_MOK_CERT = re.compile(r"^\s*mok_certificate\s*=\s*[\"']?([^\"'#\s]+)", re.MULTILINE)


class Enrollment(enum.Enum):
    ENROLLED = "enrolled"
    NOT_ENROLLED = "not enrolled"
    PENDING = "pending"  # imported, waits for MokManager at the next boot
    UNKNOWN = "unknown"  # mokutil missing, or it cannot read the firmware's lists


@dataclass(frozen=True)
class State:
    """What decides whether esca.ko loads under signature enforcement."""

    #: why modules must be signed ("" when they need not be)
    enforced: str
    #: booted through UEFI (MOK keys can be enrolled only there)
    efi: bool
    #: the installed esca.ko of the running kernel ("" when none)
    module: str
    #: its signer ("" unsigned)
    signer: str
    #: DKMS's certificate, and whether the file exists
    key: str
    key_exists: bool
    mokutil: bool
    enrollment: Enrollment
    kernel: str = ""


class Problem(enum.Enum):
    NONE = "none"
    UNSIGNED = "unsigned"  # the installed module has no signature
    NO_KEY = "no_key"  # DKMS has no key (yet): nothing to enroll
    NO_MOKUTIL = "no_mokutil"  # signed; enrollment cannot be checked
    NOT_ENROLLED = "not_enrolled"
    PENDING = "pending"  # imported, not yet enrolled in MokManager
    UNKNOWN = "unknown"  # mokutil could not tell (no EFI variables)
    REJECTED = "rejected"  # refused although DKMS's key is enrolled


def is_key_error(text: str) -> bool:
    """Whether a modprobe/insmod error is the kernel refusing a signature."""
    return any(e in text for e in KEY_ERRORS)


# --- reading the machine -----------------------------------------------------


def enforcement(secure_boot: bool | None) -> str:
    """Why this kernel loads only signed modules; "" when it does not."""
    try:
        if SIG_ENFORCE.read_text().strip() == "Y":
            return "module.sig_enforce=1"
    except OSError:
        pass
    try:
        m = re.search(r"\[(\w+)\]", LOCKDOWN.read_text())
        if m and m.group(1) != "none":
            return f"lockdown={m.group(1)}"
    except OSError:
        pass
    return "Secure Boot" if secure_boot else ""


def secure_boot(mokutil: bool) -> bool | None:
    """Secure Boot state from mokutil --sb-state, else the efivar; None: unknown."""
    if mokutil:
        out = proc.run(["mokutil", "--sb-state"], capture=True, check=False)
        text = out.stdout + out.stderr
        if "SecureBoot enabled" in text:
            return True
        if "SecureBoot disabled" in text:
            return False
    try:
        data = SECURE_BOOT_VAR.read_bytes()  # 4 bytes of attributes, then the value
    except OSError:
        return False if not EFI.exists() else None
    return len(data) > 4 and data[4] == 1


def dkms_key() -> str:
    """DKMS's certificate: mok_certificate of framework.conf(.d), else its default."""
    key = DEFAULT_KEY
    confs = [DKMS_FRAMEWORK]
    if DKMS_FRAMEWORK_D.is_dir():
        confs += sorted(DKMS_FRAMEWORK_D.glob("*.conf"))
    for conf in confs:
        try:
            found = _MOK_CERT.findall(conf.read_text(errors="replace"))
        except OSError:
            continue
        if found:
            key = found[-1]
    kernel = os.uname().release
    return key.replace("${kernelver}", kernel).replace("$kernelver", kernel)


def module_info(module: str) -> tuple[str, str]:
    """(path, signer) of a module name or .ko path; ("", "") when modinfo finds none."""
    if shutil.which("modinfo", path=proc.SYSTEM_PATH) is None:
        return "", ""
    path = proc.run(["modinfo", "-n", module], capture=True, check=False)
    if path.returncode != 0:
        return "", ""
    signer = proc.run(["modinfo", "-F", "signer", module], capture=True, check=False)
    return path.stdout.strip(), signer.stdout.strip()


def enrollment(key: str, mokutil: bool) -> Enrollment:
    if not mokutil or not Path(key).exists():
        return Enrollment.UNKNOWN
    out = proc.run(["mokutil", "--test-key", key], capture=True, check=False)
    text = out.stdout + out.stderr
    if "enrollment request" in text:
        return Enrollment.PENDING
    if "is already enrolled" in text:
        return Enrollment.ENROLLED
    if "is not enrolled" in text:
        return Enrollment.NOT_ENROLLED
    return Enrollment.UNKNOWN


def probe(module: str = MODULE) -> State:
    """This machine's state for module (a name, or the path of a .ko)."""
    mokutil = shutil.which("mokutil", path=proc.SYSTEM_PATH) is not None
    sb = secure_boot(mokutil)
    path, signer = module_info(module)
    key = dkms_key()
    return State(
        enforced=enforcement(sb),
        efi=EFI.exists(),
        module=path,
        signer=signer,
        key=key,
        key_exists=Path(key).exists(),
        mokutil=mokutil,
        enrollment=enrollment(key, mokutil),
        kernel=os.uname().release,
    )


# --- deciding and wording ------------------------------------------------------


def problem(state: State, error: str = "") -> Problem:
    """What stands between esca.ko and this kernel; error: a failed load's message."""
    refused = is_key_error(error)
    if not state.enforced and not refused:
        return Problem.NONE
    if state.module and not state.signer:
        return Problem.UNSIGNED
    if not state.key_exists:
        return Problem.NO_KEY
    if not state.mokutil:
        return Problem.NO_MOKUTIL
    if state.enrollment is Enrollment.ENROLLED:
        return Problem.REJECTED if refused else Problem.NONE
    return {
        Enrollment.NOT_ENROLLED: Problem.NOT_ENROLLED,
        Enrollment.PENDING: Problem.PENDING,
    }.get(state.enrollment, Problem.UNKNOWN)


def enroll_steps(key: str) -> list[str]:
    return [
        f"  1. mokutil --import {key}   (choose a one-time password)",
        "  2. reboot: MokManager starts before the system; choose Enroll MOK,",
        "     Continue, Yes, type that password, and reboot",
        "  3. modprobe esca",
    ]


def _rebuild_steps(key: str, kernel: str) -> list[str]:
    return [
        "To have DKMS sign it: apt-get install openssl linux-headers-" + kernel,
        f"(dkms makes its key {key} with openssl, and signs with the kernel's",
        "sign-file, which the headers bring), then rebuild it (DKMS signs it):",
        "  apt-get install --reinstall esca-dkms",
        "and enroll the key, once per machine:",
    ]


NO_UEFI = [
    "This machine did not boot through UEFI: MOK keys cannot be enrolled here;",
    "boot it without module.sig_enforce=1 (and without lockdown) instead.",
]


def advice(
    kind: Problem, *, enforced: str, key: str, module: str, signer: str, kernel: str, efi: bool
) -> str:
    """The message for kind; the values may be shell variables ("$key")."""
    if kind is Problem.NONE:
        return ""
    lines = [f"This kernel loads only modules signed by a key it trusts ({enforced})."]
    if kind is Problem.UNSIGNED:
        lines += [f"esca.ko ({module}) is not signed: the kernel refuses it."]
        lines += _rebuild_steps(key, kernel)
    elif kind is Problem.NO_KEY:
        lines += [f"DKMS has no signing key ({key}): esca.ko is refused."]
        lines += _rebuild_steps(key, kernel)
    elif kind is Problem.NO_MOKUTIL:
        lines += [
            f"Whether DKMS's key {key}, which signs esca.ko, is enrolled",
            "cannot be checked: mokutil is missing. Install it:",
            f"apt-get install mokutil; then mokutil --test-key {key}; if it is not enrolled:",
        ]
    elif kind is Problem.NOT_ENROLLED:
        lines += [
            f"esca.ko is signed with DKMS's key {key}, which is not enrolled:",
            "the kernel refuses the module. Enroll the key, once per machine:",
        ]
    elif kind is Problem.PENDING:
        lines += [
            f"DKMS's key {key} waits for its enrollment (mokutil --import was",
            "run): reboot and enroll it in MokManager (steps 2 and 3 of):",
        ]
    elif kind is Problem.UNKNOWN:
        lines += [
            f"mokutil cannot tell whether DKMS's key {key} is enrolled",
            f"(mokutil --test-key {key}). If it is not:",
        ]
    else:
        lines += [
            f"esca.ko (signed by {signer}) was refused although DKMS's key {key}",
            "is enrolled: it was signed with another key. Rebuild it with",
            "apt-get install --reinstall esca-dkms; if it is still refused, enroll its key:",
        ]
    lines += enroll_steps(key)
    if not efi:
        lines += NO_UEFI
    return "\n".join(lines)


def message(state: State, error: str = "") -> str:
    """The whole message for this state ("" when esca.ko can load); error: the
    message of a load that failed, if one was tried."""
    enforced = state.enforced
    if not enforced and error.strip():
        enforced = "it refused esca.ko: " + error.strip().splitlines()[-1]
    return advice(
        problem(state, error),
        enforced=enforced,
        key=state.key,
        module=state.module or "not installed",
        signer=state.signer or "nobody",
        kernel=state.kernel or os.uname().release,
        efi=state.efi,
    )


def load(module: str = MODULE) -> tuple[bool, str]:
    """modprobe module (root only): (loaded, the signature message when the
    kernel refused it, else modprobe's error)."""
    if os.geteuid() != 0 or shutil.which("modprobe", path=proc.SYSTEM_PATH) is None:
        return False, ""
    res = proc.run(["modprobe", module], capture=True, check=False)
    if res.returncode == 0:
        return True, ""
    error = res.stderr.strip()
    if is_key_error(error):
        return False, message(probe(module), error) or error
    return False, error


def shell_advice() -> list[tuple[str, str]]:
    """(case, text) for esca-dkms's postinst, the values being its shell
    variables: one case per problem, and "no_uefi" for the note added when
    the machine did not boot through UEFI."""
    out = []
    for kind in Problem:
        if kind is not Problem.NONE:
            text = advice(
                kind,
                enforced="$enforced",
                key="$key",
                module="$ko",
                signer="$signer",
                kernel="$kernel",
                efi=True,
            )
            out.append((kind.value, text))
    out.append(("no_uefi", "\n".join(NO_UEFI)))
    for case, text in out:
        # The text goes into an unquoted here-document: only these
        # variables may expand.
        bare = re.sub(r"\$(enforced|key|ko|signer|kernel)\b", "", text)
        if any(c in bare for c in "$`\\"):
            raise ValueError(f"{case}: text not safe for a here-document")
    return out


def main(argv: list[str] | None = None) -> int:
    """python -m esca_pkg.runtime.signing [MODULE-OR-KO [LOAD-ERROR]]: the
    message for this machine, exit 1 when there is one."""
    args = sys.argv[1:] if argv is None else argv
    state = probe(args[0] if args else MODULE)
    text = message(state, args[1] if len(args) > 1 else "")
    print(text or f"module signatures: nothing stands in the way ({state})")
    return 1 if text else 0


if __name__ == "__main__":
    sys.exit(main())
