"""Files on a host, for the modules that manage them.

One fact reads a path's kind, mode, owner, group, size, sha256 and (up to a cap, base64-encoded) its
content in one snippet; the file facts of a batch are read together by one ``perl`` process (perl-base
is part of every Debian and Ubuntu), which prints for each the output of its snippet. :func:`put_step`
writes a file atomically (a temp file in the same folder, then a rename) from stdin or from a
download; :func:`content_change` plans a file's content and attributes.

Paths are followed when read (a link to a file reads as that file) and replaced when written, as
Ansible's copy and template do by default.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from fluxops.runner.module import ArgumentError, Change, Fact, Param, Step, unified_diff
from fluxops.runner.modules._errors import ModuleError
from fluxops.shell import quote

CONTENT_CAP = 1 << 20  # bytes of content a fact brings back; larger files are compared by sha256
DEFAULT_FILE_MODE = "0644"
DEFAULT_DIR_MODE = "0755"
_MODE = re.compile(r"[0-7]{3,4}")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\$?")


class ModeParam(Param):
    """A file mode argument: an octal string such as '0644', normalized to four digits. An unquoted
    number is refused with the reason (YAML reads 0644 as 420 and 644 as six hundred forty-four)."""

    def check(self, value: Any) -> Any:
        """``value`` as four octal digits, or ArgumentError."""
        if isinstance(value, int) and not isinstance(value, bool):
            raise ArgumentError(
                f"{self.name}: write the mode quoted, e.g. '0644' "
                f"(YAML reads an unquoted {value} as a number)"
            )
        if not isinstance(value, str) or not _MODE.fullmatch(value):
            raise ArgumentError(f"{self.name}: {value!r} is not an octal mode such as '0644'")
        return normal_mode(value)


ATTRIBUTE_PARAMS = (
    ModeParam("mode", help="octal permission bits, quoted: '0644'"),
    Param("owner", (str,), help="user name or uid"),
    Param("group", (str,), help="group name or gid"),
)


@dataclass(frozen=True)
class FileState:
    """What a path is on the host; ``content`` is None when absent, not a file, not read or too large."""

    kind: str  # "file", "directory", "absent", "link" (a dangling link) or "other" (fifo, device, ...)
    mode: str = ""  # four octal digits, e.g. "0644"
    uid: int = -1
    owner: str = ""
    gid: int = -1
    group: str = ""
    size: int = 0
    sha256: str = ""
    content: bytes | None = None

    @property
    def text(self) -> str | None:
        """The content as text, or None when it is unknown or not UTF-8."""
        if self.content is None:
            return None
        try:
            return self.content.decode()
        except UnicodeDecodeError:
            return None


# The file facts of a batch in one process: for each request (frame number, what to read, path), the
# frame and the output of file_fact's script; the marker comes from the environment. perl-base has
# no Digest::SHA nor MIME::Base64: a sha256 comes from sha256sum (only for files too large to read,
# or facts without content), base64 from uuencode (pack "u") with its alphabet mapped onto base64's,
# wrapped at 76 columns as base64(1) does.
_FILE_READER_PERL = r"""
binmode STDOUT;
my ($marker, $cap) = ($ENV{FLUXOPS_FACT_MARKER}, shift(@ARGV));
sub sha256 {
    open(my $in, "<", $_[0]) or return "";
    my $pid = open(my $out, "-|") // return "";
    if (!$pid) { open(STDIN, "<&", $in) or exit 1; exec("sha256sum") or exit 127; }
    my $line = <$out> // "";
    close($out);
    return (split(/ /, $line))[0] // "";
}
sub b64 {
    my ($data) = @_;
    return "" if $data eq "";
    my $text = pack("u", $data);
    $text =~ s/^.//mg;
    $text =~ tr|` -_\n|AA-Za-z0-9+/|d;
    my $pad = (3 - length($data) % 3) % 3;
    substr($text, -$pad) = "=" x $pad if $pad;
    $text =~ s/(.{76})/$1\n/g;
    return $text =~ /\n\z/ ? $text : "$text\n";
}
while (my ($n, $want, $p) = splice(@ARGV, 0, 3)) {
    my ($content, $sha256) = split(//, $want);
    my ($out, $rc) = ("", 0);
    my @s = stat($p);
    my $kind = !@s ? (-l $p ? "link" : "absent") : -d _ ? "directory" : -f _ ? "file" : "other";
    $out .= "kind=$kind\n";
    if (@s) {
        my ($user, $group) = (scalar(getpwuid($s[4])) // "UNKNOWN", scalar(getgrgid($s[5])) // "UNKNOWN");
        $out .= sprintf("attrs=%o %d %s %d %s %d\n", $s[2] & 07777, $s[4], $user, $s[5], $group, $s[7]);
        my $small = $s[7] <= $cap;
        $out .= "sha256=" . sha256($p) . "\n" if $sha256 && $kind eq "file" && !($content && $small);
        if ($content && $kind eq "file" && $small) {
            $out .= "content:\n";
            if (open(my $fh, "<:raw", $p)) { local $/; $out .= b64(scalar(<$fh>) // ""); }
            else { $rc = 2; }  # the status sh gives a redirection that fails
        }
    }
    print "$marker begin $n\n$out\n$marker end $n $rc\n";
}
"""


class _FileReader:
    """Reads the file facts of a batch with one perl process instead of a stat and a base64 per file."""

    program = "perl"

    def command(self, requests: Sequence[tuple[int, Hashable]], marker: str) -> str:
        """``perl`` with the cap, then the frame number, flags and path of each request; the marker goes
        in its environment, never in a process list."""
        argv = ["perl", "-e", _FILE_READER_PERL, "--", str(CONTENT_CAP)]
        for number, request in requests:
            path, content, sha256 = cast(tuple[str, bool, bool], request)  # as file_fact makes it
            argv += [str(number), f"{int(content)}{int(sha256)}", path]
        return f"FLUXOPS_FACT_MARKER={quote([marker])} {quote(argv)}"


FILE_READER = _FileReader()


def file_fact(key: str, path: str, *, content: bool = True, sha256: bool = False) -> Fact:
    """A fact reading ``path``'s kind and attributes and, for a file, its content (up to the cap) and/or
    its sha256 (with ``content``, only for a file too large to read)."""
    script = [
        f"p={quote([path])} a=",
        'if [ -d "$p" ]; then echo kind=directory; elif [ -f "$p" ]; then echo kind=file;'
        ' elif [ -e "$p" ]; then echo kind=other; elif [ -L "$p" ]; then echo kind=link;'
        " else echo kind=absent; fi",
        'if [ -e "$p" ]; then a=$(stat -L -c \'%a %u %U %g %G %s\' "$p") && echo "attrs=$a"; fi',
    ]
    small = f'[ "${{a##* }}" -le {CONTENT_CAP} ]'
    if sha256:  # a file whose content is read needs no sha256 from the host
        only_large = f" && ! {small}" if content else ""
        script.append(
            f'if [ -f "$p" ]{only_large}; then echo "sha256=$(sha256sum < "$p" | cut -d " " -f 1)"; fi'
        )
    if content:
        script.append(f'if [ -f "$p" ] && {small}; then echo content:; base64 < "$p"; fi')
    return Fact(  # a fixed script, its path quoted: no subshell needed
        key,
        "\n".join(script),
        parse_file_state,
        isolated=False,
        reader=FILE_READER,
        request=(path, content, sha256),
    )


def parse_file_state(stdout: str, rc: int) -> FileState:
    """The :class:`FileState` a :func:`file_fact` snippet printed."""
    lines = stdout.splitlines()
    fields: dict[str, str] = {}
    body: list[str] | None = None
    for index, line in enumerate(lines):
        if line == "content:":
            body = lines[index + 1 :]
            break
        name, _, value = line.partition("=")
        fields[name] = value
    if fields.get("kind") not in {"file", "directory", "absent", "link", "other"}:
        raise ValueError(f"unexpected output of the file fact (exit {rc}): {stdout[:200]!r}")
    state: dict[str, object] = {"kind": fields["kind"]}
    if "attrs" in fields:
        mode, uid, owner, gid, group, size = fields["attrs"].split()
        state |= {
            "mode": normal_mode(mode),
            "uid": int(uid),
            "owner": owner,
            "gid": int(gid),
            "group": group,
            "size": int(size),
        }
    if "sha256" in fields:
        state["sha256"] = fields["sha256"]
    if body is not None:
        data = base64.b64decode("".join(body))
        state["content"] = data
        state.setdefault("sha256", hashlib.sha256(data).hexdigest())
    return FileState(**state)  # type: ignore[arg-type]


def normal_mode(mode: str) -> str:
    """An octal mode as four digits: "644" -> "0644"."""
    return format(int(mode, 8), "04o")


def check_path(name: str, value: object) -> None:
    """ArgumentError unless ``value`` is an absolute path without a newline."""
    if not isinstance(value, str) or not value.startswith("/") or "\n" in value or value.rstrip("/") == "":
        raise ArgumentError(f"{name}: {value!r} is not an absolute path to a file or folder")


def check_account(name: str, value: object) -> None:
    """ArgumentError unless ``value`` is a user or group name or a numeric id."""
    if value is not None and not (isinstance(value, str) and (value.isdigit() or _NAME.fullmatch(value))):
        raise ArgumentError(f"{name}: {value!r} is not a user or group name or id")


def check_file_args(args: dict[str, object], path_key: str) -> None:
    """The checks every file-writing module shares: an absolute path, owner and group names."""
    check_path(path_key, args[path_key])
    check_account("owner", args.get("owner"))
    check_account("group", args.get("group"))


def _matches(wanted: str | None, number: int, name: str) -> bool:
    return wanted is None or (int(wanted) == number if wanted.isdigit() else wanted == name)


def attribute_steps(
    path: str, state: FileState, mode: str | None, owner: str | None, group: str | None
) -> tuple[list[Step], list[str]]:
    """chown/chmod steps for an existing file or folder whose attributes differ, and what they change."""
    steps: list[Step] = []
    notes: list[str] = []
    new_owner = None if _matches(owner, state.uid, state.owner) else owner
    new_group = None if _matches(group, state.gid, state.group) else group
    if new_owner or new_group:
        spec = (new_owner or "") + (f":{new_group}" if new_group else "")
        steps.append(Step(("chown", spec, path), description="owner and group"))
        if new_owner:
            notes.append(f"owner {state.owner} -> {new_owner}")
        if new_group:
            notes.append(f"group {state.group} -> {new_group}")
    if mode is not None and mode != state.mode:
        # after chown, which clears setuid/setgid bits
        steps.append(Step(("chmod", mode, path), description="mode"))
        notes.append(f"mode {state.mode} -> {mode}")
    return steps, notes


# Writes the file at $1 from the output of "$@" (after five arguments): `cat` for content on stdin,
# curl or wget for a download. The temp file lives in the destination's folder (so the final rename
# is atomic) and is removed on any failure, a sha256 mismatch included. The folder is what
# dirname(1) prints, found without starting it where the path has no "//" and no trailing "/".
PUT_SCRIPT = r"""set -e
p=$1 mode=$2 own=$3 sum=$4 mk=$5
shift 5
case $p in
  */|*//*) d=$(dirname "$p") ;;
  *) d=${p%/*}; d=${d:-/} ;;
esac
if [ ! -d "$d" ]; then
  if [ "$mk" = 1 ]; then mkdir -p "$d"; else echo "fluxops: folder $d does not exist" >&2; exit 1; fi
fi
t=$(mktemp "$d/.${p##*/}.XXXXXX")
trap 'rm -f "$t"' EXIT
"$@" > "$t"
if [ -n "$sum" ]; then
  got=$(sha256sum < "$t" | cut -d " " -f 1)
  if [ "$got" != "$sum" ]; then
    echo "fluxops: sha256 of the new $p is $got, not $sum; the file was not written" >&2
    exit 1
  fi
fi
if [ -n "$own" ]; then chown "$own" "$t"; fi
chmod "$mode" "$t"
mv -f "$t" "$p"
trap - EXIT
"""


def put_step(
    path: str,
    *,
    mode: str,
    owner_spec: str = "",
    sha256: str = "",
    parents: bool = False,
    stdin: bytes | None = None,
    source: Sequence[str] = ("cat",),
    description: str = "",
) -> Step:
    """A step writing ``path`` atomically from ``source``'s output (by default: ``stdin``)."""
    argv = ("sh", "-c", PUT_SCRIPT, "sh", path, mode, owner_spec, sha256, "1" if parents else "", *source)
    return Step(argv, stdin=stdin, description=description or f"write {path}")


def owner_spec(state: FileState, owner: str | None, group: str | None) -> str:
    """The chown argument for a rewritten file: as asked, else the current owner and group (kept)."""
    exists = state.kind == "file"
    user = owner or (str(state.uid) if exists else "")
    grp = group or (str(state.gid) if exists else "")
    return user + (f":{grp}" if grp else "")


def content_change(
    path: str,
    state: FileState,
    wanted: bytes,
    *,
    mode: str | None,
    owner: str | None,
    group: str | None,
    parents: bool = False,
) -> Change | None:
    """The change that gives ``path`` the content ``wanted`` and the attributes asked, or None."""
    if state.kind in {"directory", "other"}:
        raise ModuleError(
            f"{path} is a {'folder' if state.kind == 'directory' else 'special file'}, not a file"
        )
    exists = state.kind == "file"
    if exists:
        same = (
            state.content == wanted
            if state.content is not None
            else state.sha256 == hashlib.sha256(wanted).hexdigest()
        )
        if same:
            steps, notes = attribute_steps(path, state, mode, owner, group)
            return Change(tuple(steps), f"{path}: {', '.join(notes)}") if steps else None
    new_mode = mode or (state.mode if exists else DEFAULT_FILE_MODE)
    step = put_step(
        path, mode=new_mode, owner_spec=owner_spec(state, owner, group), parents=parents, stdin=wanted
    )
    return Change(
        (step,), content_summary(path, state, wanted, new_mode), diff=content_diff(path, state, wanted)
    )


def content_summary(path: str, state: FileState, wanted: bytes, mode: str) -> str:
    """One line for a file written: created or updated, its size and mode."""
    verb = "update" if state.kind == "file" else "create"
    extra = f", mode {state.mode} -> {mode}" if state.kind == "file" and state.mode != mode else ""
    return f"{verb} {path} ({len(wanted)} bytes, {mode}{extra})"


def content_diff(path: str, state: FileState, wanted: bytes | None) -> str:
    """The unified diff of a file's content, or a one-line note when either side is binary or too large."""
    before: str | None = None
    if state.kind == "file":
        before = state.text
        if before is None:
            reason = "larger than the fact's cap" if state.content is None else "not UTF-8"
            return f"--- {path}: the current content is not shown ({reason}, sha256 {state.sha256})\n"
    after = None
    if wanted is not None:
        try:
            after = wanted.decode()
        except UnicodeDecodeError:
            return f"--- {path}: binary content, sha256 {hashlib.sha256(wanted).hexdigest()}\n"
    return unified_diff(path, before, after)
