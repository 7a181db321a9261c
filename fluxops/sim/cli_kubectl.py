"""``kubectl`` (also ``k3s kubectl``) on a simulated node: the argv subset fluxops uses, in kubectl's words.

``get TYPE [NAME...] | TYPE/NAME [-n NS | -A] [-o json|yaml|name|jsonpath=...] [--no-headers]``,
``apply -f FILE|- [-n NS] [--server-side]``, ``create secret generic NAME --from-file=KEY=PATH
[--from-literal=KEY=V] [-n NS] [--dry-run=client -o yaml]``, ``annotate [--overwrite] TYPE/NAME
KEY=VALUE|KEY-``, ``wait TYPE/NAME --for=condition=C|--for=delete [--timeout=D]``, ``delete TYPE NAME |
TYPE/NAME | -f FILE [--ignore-not-found] [--wait=false]``; global ``--kubeconfig``, ``-n``,
``--request-timeout``. Anything else exits 2 with ``unsupported by the simulator``.
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Any

import yaml

from fluxops.sim import conditions as cond
from fluxops.sim import kinds, printers
from fluxops.sim.api import name_of
from fluxops.sim.cli_common import (
    CliError,
    Unsupported,
    check_answers,
    drive_until,
    open_node,
    run_main,
    unsupported,
)
from fluxops.sim.clock import parse_duration
from fluxops.sim.cluster import SimCluster
from fluxops.sim.kinds import Kind
from fluxops.sim.store import State
from fluxops.sim.validation import ApiError

VALUE_FLAGS = {"--kubeconfig", "-n", "--namespace", "-o", "--output", "--request-timeout", "-f", "--filename",
               "--for", "--timeout", "--from-file", "--from-literal", "--dry-run", "--field-manager",
               "--type",
               "--wait", "-l", "--selector"}  # fmt: skip
BOOL_FLAGS = {"-A", "--all-namespaces", "--no-headers", "--overwrite", "--server-side", "--ignore-not-found",
              "--force-conflicts", "--show-managed-fields"}  # fmt: skip
MANAGER = {"apply": "kubectl-client-side-apply", "server-side": "kubectl"}


class Args:
    """Positionals and flags of one kubectl call (repeatable flags keep every value)."""

    def __init__(self, argv: list[str]) -> None:
        self.positional: list[str] = []
        self.flags: dict[str, list[str]] = {}
        items = iter(argv)
        for arg in items:
            if arg.startswith("-") and arg != "-":
                name, eq, value = arg.partition("=")
                if name.startswith("-o") and name not in ("-o",) and not name.startswith("--"):
                    name, value, eq = "-o", name[2:], "="
                if name in BOOL_FLAGS and not eq:
                    self.flags.setdefault(name, []).append("true")
                elif name in VALUE_FLAGS:
                    if not eq:
                        value = next(items, None)  # type: ignore[assignment]
                        if value is None:
                            raise CliError(f"error: flag needs an argument: {name}")
                    self.flags.setdefault(name, []).append(value)
                else:
                    raise unsupported("kubectl", argv, f"flag {name}")
            else:
                self.positional.append(arg)

    def get(self, *names: str, default: str | None = None) -> str | None:
        """The last value of a flag (by any of its names)."""
        for name in names:
            if name in self.flags:
                return self.flags[name][-1]
        return default

    def all(self, name: str) -> list[str]:
        """Every value of a repeatable flag."""
        return self.flags.get(name, [])

    def has(self, *names: str) -> bool:
        """True when a flag was given."""
        return any(n in self.flags for n in names)


def main(argv: list[str]) -> int:
    """``kubectl ...``."""
    return run_main("kubectl", argv, _dispatch)


def _dispatch(argv: list[str]) -> int:
    args = Args(argv)
    if not args.positional:
        raise unsupported("kubectl", argv, "no command")
    command = args.positional.pop(0)
    if command == "create" and args.positional[:2] == ["secret", "generic"]:
        del args.positional[:2]
        if args.get("--dry-run") == "client":
            return _create_secret(None, args, argv)
    handlers = {"get": _get, "apply": _apply, "annotate": _annotate, "wait": _wait, "delete": _delete,
                "create": _create_secret}  # fmt: skip
    if command not in handlers or (command == "create" and args.positional[:1] == ["secret"]):
        raise unsupported("kubectl", argv)
    sim = open_node(args.get("--kubeconfig"))
    check_answers(sim, parse_duration(args.get("--request-timeout"), 30.0) or None)
    return handlers[command](sim, args, argv)


def _namespace(args: Args) -> str:
    return args.get("-n", "--namespace") or "default"


def _targets(state: State, args: Args, argv: list[str]) -> list[tuple[Kind, str | None]]:
    """``TYPE NAME...`` or ``TYPE/NAME...`` as (kind, name or None for all)."""
    if not args.positional:
        raise CliError("error: You must specify the type of resource to get.")
    found: list[tuple[Kind, str | None]] = []
    if "/" in args.positional[0]:
        for item in args.positional:
            resource, _, name = item.partition("/")
            found.append((_kind(state, resource), name))
        return found
    resource, names = args.positional[0], args.positional[1:]
    if "," in resource:
        raise unsupported("kubectl", argv, "several resource types")
    kind = _kind(state, resource)
    return [(kind, n) for n in names] or [(kind, None)]


def _kind(state: State, resource: str) -> Kind:
    found = kinds.resolve(state, resource)
    if found is None:
        raise CliError(f'error: the server doesn\'t have a resource type "{resource}"')
    return found


def _get(sim: SimCluster, args: Args, argv: list[str]) -> int:
    state = sim.read()
    fmt = args.get("-o", "--output") or ""
    if fmt and not (fmt in ("json", "yaml", "name", "wide") or fmt.startswith("jsonpath=")):
        raise unsupported("kubectl", argv, f"-o {fmt}")
    everywhere = args.has("-A", "--all-namespaces")
    namespace = None if everywhere else _namespace(args)
    objects: list[tuple[Kind, dict[str, Any]]] = []
    missing = []
    targets = _targets(state, args, argv)
    for kind, name in targets:
        if name is None:
            objects += [(kind, o) for o in _listed(sim, state, kind, namespace)]
            continue
        obj = state.get(kind.group, kind.kind, (namespace or "") if kind.namespaced else "", name)
        if obj is None:
            missing.append(f'Error from server (NotFound): {kind.resource} "{name}" not found')
        else:
            objects.append((kind, _live(sim, obj)))
    single = len(targets) == 1 and targets[0][1] is not None
    if fmt in ("json", "yaml"):
        if objects or not single:
            sys.stdout.write(printers.dump(printers.as_document([o for _, o in objects], single), fmt))
    elif fmt == "name":
        for kind, obj in objects:
            print(printers.name_of(kind, obj))
    elif fmt.startswith("jsonpath="):
        document = printers.as_document([o for _, o in objects], single) if objects else {}
        try:
            sys.stdout.write(printers.jsonpath(document, fmt[len("jsonpath=") :].strip("'")))
        except printers.JsonPathError as exc:
            raise unsupported("kubectl", argv, str(exc)) from None
    elif objects:
        kind = objects[0][0]
        sys.stdout.write(
            printers.table(kind, [o for _, o in objects], sim.now(), everywhere, not args.has("--no-headers"))
        )
    elif not missing:
        where = "" if everywhere or not kind_namespaced(targets) else f" in {namespace} namespace"
        print(f"No resources found{where}.", file=sys.stderr)
    for line in missing:
        print(line, file=sys.stderr)
    return 1 if missing else 0


def kind_namespaced(targets: list[tuple[Kind, str | None]]) -> bool:
    """True when the (first) kind asked for is namespaced."""
    return bool(targets) and targets[0][0].namespaced


def _listed(sim: SimCluster, state: State, kind: Kind, namespace: str | None) -> list[dict[str, Any]]:
    return [_live(sim, o) for o in state.list(kind.group, kind.kind, namespace if kind.namespaced else None)]


def _live(sim: SimCluster, obj: dict[str, Any]) -> dict[str, Any]:
    """A Node's Ready condition follows its k3s process (a stopped server's node is NotReady)."""
    if obj.get("kind") != "Node" or obj.get("apiVersion") != "v1":
        return obj
    from fluxops.sim.cli_k3s import node_ready

    ready = node_ready(sim, obj["metadata"]["name"])
    out = dict(obj)
    status = dict(out.get("status") or {})
    reason = "KubeletReady" if ready else "NodeStatusUnknown"
    message = "kubelet is posting ready status" if ready else "Kubelet stopped posting node status."
    cond.mark(status, cond.READY, "True" if ready else "Unknown", reason, message, sim.now())
    out["status"] = status
    return out


def _documents(args: Args, argv: list[str]) -> list[tuple[str, dict[str, Any]]]:
    files = args.all("-f") + args.all("--filename")
    if not files:
        raise CliError("error: must specify one of -f and -k")
    docs = []
    for item in files:
        label = "STDIN" if item == "-" else item
        text = sys.stdin.read() if item == "-" else _read(Path(item))
        try:
            for doc in yaml.safe_load_all(text):
                if isinstance(doc, dict) and doc.get("kind") == "List":
                    docs += [(label, d) for d in doc.get("items") or []]
                elif isinstance(doc, dict):
                    docs.append((label, doc))
        except yaml.YAMLError as exc:
            raise CliError(f"error: error parsing {label}: {exc}") from None
    return docs


def _read(path: Path) -> str:
    if path.is_dir():
        return "\n---\n".join(p.read_text() for p in sorted(path.glob("*.y*ml")))
    try:
        return path.read_text()
    except OSError:
        raise CliError(f'error: the path "{path}" does not exist') from None


def _refusal(exc: ApiError, verb: str, label: str, obj: dict[str, Any]) -> str:
    """kubectl's line for an object the API server refused."""
    namespace, name = name_of(obj)
    if not exc.reason:
        return (
            f'error: resource mapping not found for name: "{name}" namespace: "{namespace}" from "{label}": '
            f"{exc.message}\nensure CRDs are installed first"
        )
    return f'Error from server ({exc.reason}): error when {verb} "{label}": {exc.message}'


def _apply(sim: SimCluster, args: Args, argv: list[str]) -> int:
    manager = MANAGER["server-side" if args.has("--server-side") else "apply"]
    manager = args.get("--field-manager") or manager
    failed = False
    for label, doc in _documents(args, argv):
        try:
            with sim.store.transaction() as state:
                kind = kinds.lookup(state, str(doc.get("apiVersion", "")), str(doc.get("kind", "")))
                action, stored = sim.api(state).apply(doc, manager, default_namespace=_namespace(args))
            assert kind is not None
            print(f"{printers.name_of(kind, stored)} {action}")
        except ApiError as exc:
            failed = True
            verb = "creating"
            print(_refusal(exc, verb, label, doc), file=sys.stderr)
    return 1 if failed else 0


def _create_secret(sim: SimCluster | None, args: Args, argv: list[str]) -> int:
    if len(args.positional) != 1:
        raise CliError("error: exactly one NAME is required, got " + str(len(args.positional)))
    data: dict[str, str] = {}
    for spec in args.all("--from-file"):
        key, eq, source = spec.partition("=")
        source = source if eq else key
        key = key if eq else Path(source).name
        raw = sys.stdin.buffer.read() if source in ("/dev/stdin", "-") else _read_bytes(Path(source))
        data[key] = base64.b64encode(raw).decode()
    for spec in args.all("--from-literal"):
        key, _, value = spec.partition("=")
        data[key] = base64.b64encode(value.encode()).decode()
    secret = {
        "apiVersion": "v1",
        "data": data,
        "kind": "Secret",
        "metadata": {"name": args.positional[0], "namespace": _namespace(args)},
    }
    if args.get("--type"):
        secret["type"] = args.get("--type")
    dry = args.get("--dry-run")
    if dry == "client":
        fmt = args.get("-o", "--output") or ""
        if fmt in ("yaml", "json"):
            sys.stdout.write(printers.dump(secret, fmt))
        elif fmt:
            raise unsupported("kubectl", argv, f"-o {fmt}")
        else:
            print(f"secret/{args.positional[0]} created (dry run)")
        return 0
    if dry not in (None, "none"):
        raise unsupported("kubectl", argv, f"--dry-run={dry}")
    assert sim is not None
    with sim.store.transaction() as state:
        if state.get("", "Secret", _namespace(args), args.positional[0]) is not None:
            raise CliError(f'error: failed to create secret secrets "{args.positional[0]}" already exists')
        try:
            sim.api(state).apply(secret, "kubectl-create")
        except ApiError as exc:
            raise CliError(f"error: failed to create secret {exc.message}") from None
    print(f"secret/{args.positional[0]} created")
    return 0


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        raise CliError(f"error: error reading {path}: no such file or directory") from None


def _one(state: State, args: Args, argv: list[str]) -> tuple[Kind, str, list[str]]:
    """``TYPE/NAME rest...`` or ``TYPE NAME rest...``."""
    if not args.positional:
        raise CliError("error: you must specify the type of resource")
    first = args.positional[0]
    if "/" in first:
        resource, _, name = first.partition("/")
        return _kind(state, resource), name, args.positional[1:]
    if len(args.positional) < 2:
        raise CliError("error: you must specify a name")
    return _kind(state, first), args.positional[1], args.positional[2:]


def _annotate(sim: SimCluster, args: Args, argv: list[str]) -> int:
    with sim.store.transaction() as state:
        kind, name, pairs = _one(state, args, argv)
        namespace = _namespace(args) if kind.namespaced else ""
        obj = state.get(kind.group, kind.kind, namespace, name)
        if obj is None:
            raise CliError(f'Error from server (NotFound): {kind.resource} "{name}" not found')
        changes: dict[str, str | None] = {}
        current = obj["metadata"].get("annotations") or {}
        for pair in pairs:
            if pair.endswith("-") and "=" not in pair:
                changes[pair[:-1]] = None
                continue
            key, eq, value = pair.partition("=")
            if not eq:
                raise unsupported("kubectl", argv, f"annotation {pair!r}")
            if key in current and current[key] != value and not args.has("--overwrite"):
                raise CliError(
                    f"error: --overwrite is false but found the following declared annotation(s): "
                    f"'{key}' already has a value ({current[key]})"
                )
            changes[key] = value
        sim.api(state).patch_metadata(obj, "kubectl-annotate", annotations=changes)
    print(f"{printers.name_of(kind, obj)} annotated")
    return 0


def _wait(sim: SimCluster, args: Args, argv: list[str]) -> int:
    state = sim.read()
    kind, name, rest = _one(state, args, argv)
    if rest:
        raise unsupported("kubectl", argv, "several objects")
    namespace = _namespace(args) if kind.namespaced else ""
    wanted = args.get("--for") or ""
    timeout = parse_duration(args.get("--timeout"), 30.0)
    label = f"{kind.plural}/{name}"
    if wanted == "delete":
        done = drive_until(sim, lambda s: s.get(kind.group, kind.kind, namespace, name) is None, timeout)
        if done is None:
            raise CliError(f"error: timed out waiting for the condition on {label}")
        print(f"{printers.name_of(kind, {'metadata': {'name': name}})} condition met")
        return 0
    if not wanted.lower().startswith("condition="):
        raise unsupported("kubectl", argv, f"--for={wanted}")
    condition, _, value = wanted[len("condition=") :].partition("=")
    value = value or "True"
    if state.get(kind.group, kind.kind, namespace, name) is None:
        raise CliError(f'Error from server (NotFound): {kind.resource} "{name}" not found')

    def met(current: State) -> bool:
        obj = current.get(kind.group, kind.kind, namespace, name)
        if obj is None:
            return False
        obj = _live(sim, obj)
        found = next((c for c in (obj.get("status") or {}).get("conditions") or []
                      if str(c.get("type", "")).lower() == condition.lower()), None)  # fmt: skip
        return found is not None and str(found.get("status")) == value

    done = drive_until(sim, met, timeout)
    if done is None:
        raise CliError(f"error: timed out waiting for the condition on {label}")
    print(f"{printers.name_of(kind, done.get(kind.group, kind.kind, namespace, name))} condition met")
    return 0


def _delete(sim: SimCluster, args: Args, argv: list[str]) -> int:
    state = sim.read()
    targets: list[tuple[Kind, str, str]] = []
    if args.has("-f", "--filename"):
        for _, doc in _documents(args, argv):
            kind = kinds.lookup(state, str(doc.get("apiVersion", "")), str(doc.get("kind", "")))
            if kind is None:
                raise CliError(kinds.no_match(str(doc.get("apiVersion")), str(doc.get("kind"))))
            namespace, name = name_of(doc)
            targets.append((kind, (namespace or _namespace(args)) if kind.namespaced else "", name))
    else:
        for kind, name in _targets(state, args, argv):
            if name is None:
                raise CliError("error: resource(s) were provided, but no name was specified")
            targets.append((kind, _namespace(args) if kind.namespaced else "", name))
    code = 0
    for kind, namespace, name in targets:
        with sim.store.transaction() as current:
            obj = current.get(kind.group, kind.kind, namespace, name)
            if obj is not None:
                sim.api(current).delete(obj)
        if obj is None:
            if not args.has("--ignore-not-found"):
                print(f'Error from server (NotFound): {kind.resource} "{name}" not found', file=sys.stderr)
                code = 1
            continue
        print(f'{kind.singular}{"." + kind.group if kind.group else ""} "{name}" deleted')
        if args.get("--wait", default="true") != "false":
            gone = drive_until(
                sim, lambda s, k=kind, n=namespace, m=name: s.get(k.group, k.kind, n, m) is None, 300
            )
            if gone is None:
                raise CliError(f"error: timed out waiting for the deletion of {kind.plural}/{name}")
    return code


def entry() -> None:
    """``python -m fluxops.sim.kubectl``."""
    sys.exit(main(sys.argv))


__all__ = ["Unsupported", "entry", "main"]
