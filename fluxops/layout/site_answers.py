"""The new cluster's site values: taken from options, asked on a terminal, or listed as missing."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from fluxops.errors import LayoutError
from fluxops.layout.site_values import FIELDS, SiteValue, address_range, check_value, in_ranges

ASK_ATTEMPTS = 3


@dataclass(frozen=True)
class Question:
    """One template value the new cluster needs its own value for."""

    field: str
    cluster: str
    template: str
    old: str
    places: tuple[str, ...]
    problem: str = ""

    @property
    def option(self) -> str:
        """The new-cluster option that gives this value."""
        return FIELDS[self.field].option

    @property
    def what(self) -> str:
        """What the value is, for people."""
        return FIELDS[self.field].what


Asker = Callable[[Question], str]


@dataclass
class Answers:
    """Old value -> new value, per field; what is still missing; options that had nothing to set."""

    mapping: dict[str, dict[str, str]] = field(default_factory=dict)
    missing: list[Question] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)

    def new(self, field_name: str, old: str) -> str | None:
        """The new value for ``old`` of a field, if one was given."""
        return self.mapping.get(field_name, {}).get(old)


def _from_options(q_field: str, olds: list[str], given: Sequence[str], template: str) -> dict[str, str]:
    """``NEW`` (the template has one value) or ``OLD=NEW`` items of one option, checked."""
    option, what = FIELDS[q_field].option, FIELDS[q_field].what
    mapping: dict[str, str] = {}
    bare = []
    for item in given:
        if "=" in item:
            old, new = (part.strip() for part in item.split("=", 1))
            if old not in olds:
                raise LayoutError(
                    f"{option} {item}: {template} has no {what} {old!r} in the files new-cluster copies "
                    f"(it has: {', '.join(olds) or 'none'})"
                )
            mapping[old] = check_value(q_field, new)
        else:
            bare.append(check_value(q_field, item))
    rest = [o for o in olds if o not in mapping]
    if len(bare) == 1 and len(rest) == 1:
        mapping[rest[0]] = bare[0]
    elif bare:
        raise LayoutError(
            f"{template} has {len(olds)} {what} values ({', '.join(olds)}): give each as {option} OLD=NEW"
        )
    return mapping


def _ask(ask: Asker, question: Question) -> str:
    """A checked answer from ``ask``; asks again (up to ASK_ATTEMPTS) after a bad one."""
    for _ in range(ASK_ATTEMPTS):
        try:
            answer = ask(question)
        except (EOFError, KeyboardInterrupt):
            raise LayoutError(f"no answer for {question.option}; nothing written") from None
        try:
            if question.field == "address_pool":
                return ",".join(pool_entries(answer))
            return check_value(question.field, answer)
        except LayoutError as exc:
            question = replace(question, problem=str(exc))
    raise LayoutError(f"no valid answer for {question.option}: {question.problem}; nothing written")


def pool_entries(address: str | Sequence[str]) -> list[str]:
    """MetalLB pool entries from ``--address`` values (comma-separated too); one address becomes a /32."""
    items = [address] if isinstance(address, str) else list(address)
    entries = []
    for text in (part.strip() for item in items for part in item.split(",")):
        if not text:
            continue
        try:
            first, last = address_range(text)
        except ValueError as exc:
            raise LayoutError(
                f"--address {text!r} is not an address, CIDR or range (e.g. 10.0.0.5, 10.0.0.0/28, "
                f"10.0.0.10-10.0.0.20): {exc}"
            ) from None
        if "-" in text:
            entries.append(f"{first}-{last}")
        elif "/" in text:
            entries.append(text)
        else:
            entries.append(f"{first}/{first.max_prefixlen}")
    if not entries:
        raise LayoutError("--address is empty: give an address, CIDR or range (e.g. 10.0.0.10-10.0.0.20)")
    return entries


def answers(
    cluster: str,
    template: str,
    copied: list[SiteValue],
    given: Mapping[str, Sequence[str]],
    ask: Asker | None,
) -> Answers:
    """New values for every template value the copy holds: options first, then ``ask`` for the rest.

    ``given`` maps field names to option values; for ``address_pool`` they are the pool's entries.
    What neither gives is in ``missing``.
    """
    result = Answers()
    for name in FIELDS:
        olds = list(dict.fromkeys(v.value for v in copied if v.field == name))
        if name == "address_pool" and olds:  # the pool is asked for and replaced as a whole
            olds = [", ".join(olds)]
        values = [v for v in given.get(name) or [] if v.strip()]
        if values and not olds:
            result.unused.append(
                f"{FIELDS[name].option} not used: {template} has no {FIELDS[name].what} to set"
            )
            continue
        if name == "address_pool":
            mapping = {o: ",".join(pool_entries(values)) for o in olds} if values else {}
        else:
            mapping = _from_options(name, olds, values, template)
        for old in (o for o in olds if o not in mapping):
            places = tuple(v.at for v in copied if v.field == name and v.value in old.split(", "))
            question = Question(name, cluster, template, old, places)
            if ask is None:
                result.missing.append(question)
            else:
                mapping[old] = _ask(ask, question)
        result.mapping[name] = mapping
    _check_lb_in_pool(result)
    return result


def _check_lb_in_pool(result: Answers) -> None:
    """Refuse new LoadBalancer IPs outside the new pool (when both are given)."""
    pools = result.mapping.get("address_pool") or {}
    if not pools:
        return
    ranges = [address_range(e) for entries in pools.values() for e in entries.split(",")]
    for new in (result.mapping.get("lb_ips") or {}).values():
        if not in_ranges(ipaddress.ip_address(new), ranges):
            raise LayoutError(
                f"--lb-ip {new} is outside the new pool ({', '.join(pools.values())}): take an address "
                "from the pool or widen --address; nothing written"
            )


def missing_message(cluster: str, template: str, missing: list[Question]) -> str:
    """The refusal listing each missing option with the template's value and where it is."""
    lines = [
        f"k8s/clusters/{cluster} not written: these site values of {template} need {cluster}'s own "
        "(OLD=NEW picks one of several; the same value keeps it):"
    ]
    for q in missing:
        lines.append(f"  {q.option} for {template}'s {q.what} {q.old} ({', '.join(q.places)})")
    lines.append("or run the task on a terminal to be asked for each")
    return "\n".join(lines)


def ask_terminal(question: Question) -> str:
    """Ask for one value on the terminal: the template's value is shown, never offered as a default."""
    if question.problem:
        print(f"  {question.problem}")
    else:
        print(f"{question.template}'s {question.what} {question.old} ({', '.join(question.places)})")
    while True:
        answer = input(f"  {question.cluster}'s value ({question.option}): ").strip()
        if answer:
            return answer
        print(f"  a value is needed (type {question.old} to keep {question.template}'s)")
