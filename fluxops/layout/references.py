"""Cross-phase references: a phase using a Service, Secret or ConfigMap only a later phase creates.

Which objects each phase creates (:func:`creations`): the Services, Secrets, ConfigMaps and
HelmReleases it applies; the Secret an ExternalSecret, SealedSecret or cert-manager Certificate it
applies makes; and, since charts are not rendered, the Services of a HelmRelease's chart, taken to be
named like the release (its release name, its own name or ``fullnameOverride``, alone or followed by
``-``) in the release's namespace.

Which objects each object refers to (:func:`references`): in a workload's pod template and a
HelmRelease's chart values (``valuesFrom`` ConfigMaps merged under ``values``, as helm-controller
merges them) the ``secretKeyRef``/``configMapKeyRef``, ``envFrom``, ``secret``/``configMap``
volumes (projected too), ``imagePullSecrets`` and a chart's ``existingSecret``; a HelmRelease's
``valuesFrom`` and ``dependsOn`` (helm-controller waits for those releases); and in the pod
templates, chart values and a ConfigMap's data, Service hosts: ``name.namespace.svc...`` anywhere in
a string, ``name.namespace`` and ``name`` as a URL's host, ``name.namespace[:port]`` or
``name:port`` as a whole value.

:func:`forward_references` pairs them: a reference to an object created only by phases that are
neither the referring phase nor among its ancestors (``dependsOn``, transitively). An object no
phase creates is not one (a chart or an operator may create it). :func:`check_references` reports
each as ``forward-reference``: an error when the referring phase waits for the object (``wait:
true`` or a health check naming it) and the reference is not ``optional``, a warning otherwise.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from fluxops.layout.findings import Findings
from fluxops.layout.locate import label, where
from fluxops.layout.merge import dig, merge_maps
from fluxops.layout.model import Cluster, Phase, meta
from fluxops.layout.sources import YamlSyntaxError, line_of, load_all
from fluxops.layout.tree import Tree

CODE = "forward-reference"
REFERRED_KINDS = ("Service", "Secret", "ConfigMap")
# Where each workload kind keeps its pod spec.
POD_SPEC: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
NOT_HOSTS = frozenset({"image", "repository", "tag", "digest", "registry"})  # keys whose strings are no hosts
VOLUME_KEYS = {
    "secretName": frozenset({"secretName", "items", "defaultMode", "optional"}),
    "name": frozenset({"name", "items", "defaultMode", "optional"}),
}
# Keys of a mapping that may name a Secret or ConfigMap (a mapping without any holds no reference).
REF_KEYS = frozenset(
    {
        "secretKeyRef",
        "configMapKeyRef",
        "secretRef",
        "configMapRef",
        "secret",
        "configMap",
        "imagePullSecrets",
        "existingSecret",
    }
)
LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
SVC_HOST = re.compile(rf"(?<![\w.-])((?:{LABEL}\.)+)svc(?![\w-])")
URL_HOST = re.compile(rf"\b[a-z][a-z0-9+.-]*://(?:[^@/\s]*@)?({LABEL}(?:\.{LABEL})?)(?=[:/?#\s\"',;]|$)")
WHOLE_HOST = re.compile(rf"^(?:({LABEL}\.{LABEL})(?::\d{{1,5}})?|({LABEL}):\d{{1,5}})$")

WORD_ENDS = " \t\n\"'<>,;"
WORD_END = re.compile(r"[\s\"'<>,;]")
KeyPath = tuple[Any, ...]  # keys and list indexes from an object down to a value


@dataclass(frozen=True)
class Reference:
    """An object one object uses: ``kind`` ``namespace``/``name``, as written (``text``).

    ``path`` is where it is in the object (``("spec", "values", ...)`` for inline chart values), or
    in the chart values when ``entry`` is set: ``entry`` is (namespace, name, key) of the ConfigMap
    data entry holding it (a ``valuesFrom`` text, a ConfigMap's own data) and ``line`` its line there.
    """

    kind: str
    namespace: str
    name: str
    text: str
    path: KeyPath = ()
    optional: bool = False
    entry: tuple[str, str, str] | None = None
    line: int | None = None

    @property
    def target(self) -> str:
        """``Kind namespace/name`` of the object referred to."""
        return f"{self.kind} {self.namespace + '/' if self.namespace else ''}{self.name}"


@dataclass(frozen=True)
class Creation:
    """An object a phase's object creates: ``kind`` ``namespace``/``name`` (a name prefix when ``prefix``,
    for a chart's Services), and how (``via``: empty when the phase applies it itself).
    """

    kind: str
    namespace: str
    name: str
    prefix: bool = False
    via: str = ""

    def covers(self, ref: Reference) -> bool:
        """True when this is the object ``ref`` names (an empty namespace matches any)."""
        if ref.kind != self.kind or (self.namespace and ref.namespace and self.namespace != ref.namespace):
            return False
        return ref.name == self.name or (self.prefix and ref.name.startswith(self.name + "-"))


@dataclass(eq=False)
class Creator:
    """A phase creating a referred object, the object that does, and how."""

    phase: Phase
    obj: dict[str, Any]
    creation: Creation


@dataclass(eq=False)
class ForwardRef:
    """A reference from ``obj`` of ``phase`` to an object only ``creators`` (phases ``phase`` does not
    depend on) create. ``later``: each of them depends on ``phase``, so Flux applies them only after
    ``phase`` is Ready. ``blocking``: ``phase`` waits for ``obj`` and the reference is not optional.
    """

    phase: Phase
    obj: dict[str, Any]
    ref: Reference
    creators: list[Creator] = field(default_factory=list)
    later: bool = False
    blocking: bool = False

    @property
    def creator_phases(self) -> list[str]:
        """Names of the creating phases, in the cluster's order, once each."""
        return list(dict.fromkeys(c.phase.name for c in self.creators))

    @property
    def reason(self) -> str:
        """One sentence: what refers to what, and which phases create it."""
        phases = " and ".join(self.creator_phases)
        return (
            f"{label(self.obj)} refers to {self.ref.target} ({self.ref.text}), which only "
            f"{'phase' if len(self.creator_phases) == 1 else 'phases'} {phases} "
            f"{'creates' if len(self.creator_phases) == 1 else 'create'}"
        )


# --- what an object creates ------------------------------------------------------------------------


def release_of(obj: dict[str, Any]) -> tuple[str, str]:
    """(namespace, release name) of a HelmRelease: ``targetNamespace`` and ``releaseName`` or their
    defaults (``<targetNamespace>-<name>`` with a target namespace, as helm-controller names it).
    """
    spec = _dict(obj.get("spec"))
    name, namespace = meta(obj)
    target = str(spec.get("targetNamespace") or "")
    default = f"{target}-{name}" if target else name
    return target or namespace, str(spec.get("releaseName") or default)[:53]


def creations(obj: dict[str, Any], values: dict[str, Any] | None = None) -> list[Creation]:
    """The Services, Secrets and ConfigMaps applying ``obj`` creates (``values``: a HelmRelease's merged
    chart values, for ``fullnameOverride``).
    """
    kind = str(obj.get("kind", ""))
    name, namespace = meta(obj)
    spec = _dict(obj.get("spec"))
    if kind in REFERRED_KINDS:
        return [Creation(kind, namespace, name)]
    group = str(obj.get("apiVersion", "")).split("/")[0]
    via = label(obj)
    if kind == "ExternalSecret" and group == "external-secrets.io":
        return [Creation("Secret", namespace, str(_dict(spec.get("target")).get("name") or name), via=via)]
    if kind == "SealedSecret" and group == "bitnami.com":
        return [Creation("Secret", namespace, name, via=via)]
    if kind == "Certificate" and group == "cert-manager.io" and isinstance(spec.get("secretName"), str):
        return [Creation("Secret", namespace, spec["secretName"], via=via)]
    if kind == "HelmRelease" and group == "helm.toolkit.fluxcd.io":
        release_ns, release = release_of(obj)
        names = [release, name, str(_dict(values).get("fullnameOverride") or "")]
        services = [
            Creation("Service", release_ns, n, prefix=True, via=via) for n in dict.fromkeys(names) if n
        ]
        return [Creation(kind, namespace, name), *services]
    return []


# --- what an object refers to ----------------------------------------------------------------------


@dataclass(frozen=True)
class ValuesLayer:
    """One ``valuesFrom`` text of a HelmRelease: the ConfigMap entry and its parsed values (with lines)."""

    entry: tuple[str, str, str]
    values: dict[str, Any]


ConfigMaps = Mapping[tuple[str, str], dict[str, Any]]  # (namespace, name) -> ConfigMap


def chart_values(obj: dict[str, Any], config_maps: ConfigMaps) -> tuple[dict[str, Any], list[ValuesLayer]]:
    """A HelmRelease's chart values as helm-controller merges them: its ``valuesFrom`` ConfigMaps in
    order (Secrets are encrypted offline: skipped), then ``values``; and the ConfigMap layers read.
    """
    spec = _dict(obj.get("spec"))
    namespace = meta(obj)[1]
    merged: dict[str, Any] = {}
    layers: list[ValuesLayer] = []
    for ref in _list(spec.get("valuesFrom")):
        if not isinstance(ref, dict) or ref.get("kind") != "ConfigMap":
            continue
        name, key = str(ref.get("name", "")), str(ref.get("valuesKey") or "values.yaml")
        text = _dict(_dict(config_maps.get((namespace, name))).get("data")).get(key)
        if not isinstance(text, str):
            continue
        if ref.get("targetPath"):
            merged = merge_maps(merged, _at_path(str(ref["targetPath"]), text))
            continue
        parsed = _parse(text)
        if parsed is not None:
            layers.append(ValuesLayer((namespace, name, key), parsed))
            merged = merge_maps(merged, parsed)
    return merge_maps(merged, _dict(spec.get("values"))), layers


def references(
    obj: dict[str, Any],
    config_maps: ConfigMaps | None = None,
    chart: tuple[dict[str, Any], list[ValuesLayer]] | None = None,
) -> list[Reference]:
    """What ``obj`` refers to: from a workload's pod template, a HelmRelease's ``valuesFrom`` and chart
    values (``config_maps``: the cluster's ConfigMaps by (namespace, name), for ``valuesFrom``; or
    ``chart``, what :func:`chart_values` gave for it), a ConfigMap's data; nothing from other kinds.
    """
    kind = str(obj.get("kind", ""))
    name, namespace = meta(obj)
    if kind in POD_SPEC:
        pod = dig(obj, POD_SPEC[kind])
        return list(_walk(pod, POD_SPEC[kind], namespace)) if isinstance(pod, dict) else []
    if kind == "ConfigMap":
        found = []
        for key, text in _dict(obj.get("data")).items():
            if isinstance(text, str):
                found += [
                    Reference(
                        "Service", ns, svc, written, ("data", key), entry=(namespace, name, str(key)), line=n
                    )
                    for ns, svc, written, n in _hosts(text, namespace, whole=False)
                ]
        return found
    if kind != "HelmRelease":
        return []
    found = []
    for i, dep in enumerate(_list(_dict(obj.get("spec")).get("dependsOn"))):
        if isinstance(dep, dict) and dep.get("name"):
            dep_ns, dep_name = str(dep.get("namespace") or namespace), str(dep["name"])
            path = ("spec", "dependsOn", i, "name")
            found.append(Reference("HelmRelease", dep_ns, dep_name, f"dependsOn {dep_name}", path))
    for i, ref in enumerate(_list(_dict(obj.get("spec")).get("valuesFrom"))):
        if isinstance(ref, dict) and ref.get("kind") in ("ConfigMap", "Secret") and ref.get("name"):
            ref_name, ref_kind = str(ref["name"]), str(ref["kind"])
            text = f"valuesFrom {ref_kind} {ref_name}"
            path = ("spec", "valuesFrom", i, "name")
            found.append(Reference(ref_kind, namespace, ref_name, text, path, ref.get("optional") is True))
    values, layers = chart if chart is not None else chart_values(obj, config_maps or {})
    inline = _dict(_dict(obj.get("spec")).get("values"))
    for ref in _walk(values, (), release_of(obj)[0]):
        if dig(inline, ref.path) is not None:
            found.append(replace(ref, path=("spec", "values", *ref.path)))
            continue
        layer = next((la for la in reversed(layers) if dig(la.values, ref.path) is not None), None)
        line = line_of(layer.values, *ref.path) if layer is not None else None
        found.append(replace(ref, entry=layer.entry if layer is not None else None, line=line))
    return found


def _walk(node: Any, path: KeyPath, namespace: str) -> Iterator[Reference]:
    """The references below ``node`` (a pod spec or chart values) of an object in ``namespace``."""
    if isinstance(node, dict):
        yield from _structured(node, path, namespace)
        for key, value in node.items():
            if isinstance(value, str):
                if key not in NOT_HOSTS:
                    for ns, svc, written, _ in _hosts(value, namespace):
                        yield Reference("Service", ns, svc, written, (*path, key))
            else:
                yield from _walk(value, (*path, key), namespace)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, str):
                if not (path and path[-1] in NOT_HOSTS):
                    for ns, svc, written, _ in _hosts(item, namespace):
                        yield Reference("Service", ns, svc, written, (*path, i))
            else:
                yield from _walk(item, (*path, i), namespace)


def _structured(node: dict[str, Any], path: KeyPath, namespace: str) -> Iterator[Reference]:
    """Kubernetes object references held directly by one mapping."""
    if node.keys().isdisjoint(REF_KEYS):
        return
    for key, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
        ref = node.get(key)
        if isinstance(ref, dict) and isinstance(ref.get("name"), str):
            yield _named(kind, namespace, ref, "name", (*path, key, "name"), key)
    if len(path) >= 2 and path[-2] == "envFrom":
        for key, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
            ref = node.get(key)
            if isinstance(ref, dict) and isinstance(ref.get("name"), str):
                yield _named(kind, namespace, ref, "name", (*path, key, "name"), f"envFrom {key}")
    secret = node.get("secret")
    projected = len(path) >= 2 and path[-2] == "sources"  # an item of a projected volume's sources
    name_key = "name" if projected else "secretName"
    if (
        isinstance(secret, dict)
        and isinstance(secret.get(name_key), str)
        and secret.keys() <= VOLUME_KEYS[name_key]
    ):
        yield _named("Secret", namespace, secret, name_key, (*path, "secret", name_key), "secret volume")
    ref = node.get("configMap")
    if isinstance(ref, dict) and isinstance(ref.get("name"), str) and ref.keys() <= VOLUME_KEYS["name"]:
        yield _named("ConfigMap", namespace, ref, "name", (*path, "configMap", "name"), "configMap volume")
    for i, item in enumerate(_list(node.get("imagePullSecrets"))):
        item_name = item.get("name") if isinstance(item, dict) else item
        if isinstance(item_name, str) and item_name:
            text = f"imagePullSecrets {item_name}"
            yield Reference("Secret", namespace, item_name, text, (*path, "imagePullSecrets", i))
    if isinstance(node.get("existingSecret"), str) and node["existingSecret"]:
        name = node["existingSecret"]
        yield Reference("Secret", namespace, name, f"existingSecret {name}", (*path, "existingSecret"))


def _named(kind: str, namespace: str, ref: dict[str, Any], key: str, path: KeyPath, how: str) -> Reference:
    name = str(ref[key])
    return Reference(kind, namespace, name, f"{how} {name}", path, ref.get("optional") is True)


def _hosts(text: str, namespace: str, *, whole: bool = True) -> Iterator[tuple[str, str, str, int]]:
    """(namespace, Service, as written, line) of each Service host in ``text``: ``name.namespace.svc...``
    and URL hosts anywhere; ``name.namespace[:port]``/``name:port`` as the whole value (not in a
    ConfigMap's data, whose entries are files: ``whole`` false).
    """
    if "." not in text and ":" not in text:
        return
    for match in SVC_HOST.finditer(text):
        labels = match.group(1).rstrip(".").split(".")
        if len(labels) >= 2:
            yield labels[-1], labels[-2], _token(text, match.start()), _line(text, match.start())
    for match in URL_HOST.finditer(text):
        parts = match.group(1).split(".")
        ns = parts[1] if len(parts) == 2 else namespace
        yield ns, parts[0], _token(text, match.start()), _line(text, match.start())
    alone = WHOLE_HOST.match(text.strip()) if whole else None
    if alone is not None:
        pair, single = alone.group(1), alone.group(2)
        svc, ns = pair.split(".") if pair else (single, namespace)
        yield ns, svc, text.strip(), 1


def _token(text: str, offset: int) -> str:
    """The word of ``text`` around ``offset`` (a URL, a host, ``--flag=url``: up to white space or quotes)."""
    start = max(text.rfind(c, 0, offset) for c in WORD_ENDS) + 1
    end = WORD_END.search(text, offset)
    return text[start : end.start() if end else len(text)]


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


# --- pairing them ----------------------------------------------------------------------------------


def _config_maps(cluster: Cluster) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (meta(o)[1], meta(o)[0]): o for p in cluster.phases for o in p.objects if o.get("kind") == "ConfigMap"
    }


def _values_inputs(cluster: Cluster) -> set[tuple[str, str]]:
    """(namespace, name) of every ConfigMap a HelmRelease reads its values from (read as its values)."""
    used = set()
    for phase in cluster.phases:
        for obj in phase.objects:
            if obj.get("kind") == "HelmRelease":
                for ref in _list(_dict(obj.get("spec")).get("valuesFrom")):
                    if isinstance(ref, dict) and ref.get("kind") == "ConfigMap":
                        used.add((meta(obj)[1], str(ref.get("name", ""))))
    return used


def waits_for(phase: Phase, obj: dict[str, Any]) -> bool:
    """True when ``phase`` is Ready only once ``obj`` is: ``wait: true``, or a health check naming it."""
    if phase.wait:
        return True
    name, namespace = meta(obj)
    return any(
        isinstance(check, dict)
        and (check.get("kind"), check.get("name")) == (obj.get("kind"), name)
        and str(check.get("namespace") or namespace) == namespace
        for check in _list(phase.spec.get("healthChecks"))
    )


def forward_references(cluster: Cluster) -> list[ForwardRef]:
    """Every reference of the cluster's phases to a Service, Secret or ConfigMap that only phases the
    referring one does not depend on create (see the module's docstring for what counts).
    """
    config_maps = _config_maps(cluster)
    values_inputs = _values_inputs(cluster)
    by_kind_name: dict[tuple[str, str], list[Creator]] = {}
    prefixed: dict[str, list[Creator]] = {}
    referring: list[tuple[Phase, dict[str, Any], list[Reference]]] = []
    for phase in cluster.phases:
        for obj in phase.objects:
            chart = chart_values(obj, config_maps) if obj.get("kind") == "HelmRelease" else None
            for made in creations(obj, chart[0] if chart is not None else None):
                creator = Creator(phase, obj, made)
                if made.prefix:
                    prefixed.setdefault(made.kind, []).append(creator)
                else:
                    by_kind_name.setdefault((made.kind, made.name), []).append(creator)
            if obj.get("kind") == "ConfigMap" and (meta(obj)[1], meta(obj)[0]) in values_inputs:
                continue  # read as the HelmRelease's values
            refs = references(obj, config_maps, chart)
            if refs:
                referring.append((phase, obj, refs))
    ancestors = {id(p): cluster.ancestors(p) for p in cluster.phases}
    found = []
    for phase, obj, refs in referring:
        before = {phase.key, *ancestors[id(phase)]}
        for ref in refs:
            candidates = by_kind_name.get((ref.kind, ref.name), []) + prefixed.get(ref.kind, [])
            creators = [c for c in candidates if c.creation.covers(ref)]
            if not creators or any(c.phase.key in before for c in creators):
                continue
            later = all(phase.key in ancestors[id(c.phase)] for c in creators)
            blocking = waits_for(phase, obj) and not ref.optional
            found.append(ForwardRef(phase, obj, ref, creators, later, blocking))
    return found


# --- the check -------------------------------------------------------------------------------------


def check_references(tree: Tree, cluster: Cluster, findings: Findings) -> None:
    """Report each forward reference of ``cluster`` (code ``forward-reference``) at the line that makes
    it, naming where the object is created.
    """
    locator = _Locator(tree, cluster)
    for fwd in forward_references(cluster):
        place = locator.reference(fwd)
        message = f"{_message(fwd, locator)}: {_advice(fwd)}"
        if fwd.blocking:
            findings.error(CODE, message, **place)
        else:
            findings.warning(CODE, message, **place)


def _message(fwd: ForwardRef, locator: _Locator) -> str:
    waits = "waits" if waits_for(fwd.phase, fwd.obj) else "does not wait"
    places = []
    for creator in fwd.creators:
        made = creator.creation
        how = f" by {made.via}" if made.via else ""
        if made.prefix:
            how = f", a Service of the chart of {made.via}"
        places.append(f"{locator.creator(creator)}{how}")
    count = len(fwd.creator_phases)
    return (
        f"{label(fwd.obj)} ({fwd.phase.name}, {waits}) refers to {fwd.ref.target} ({fwd.ref.text}), which "
        f"only {'phase' if count == 1 else 'phases'} {' and '.join(fwd.creator_phases)} "
        f"{'creates' if count == 1 else 'create'} ({'; '.join(places)})"
    )


def _advice(fwd: ForwardRef) -> str:
    phase, others = fwd.phase.name, " and ".join(fwd.creator_phases)
    if fwd.ref.optional:
        why = f"it is optional, so {label(fwd.obj)} starts without it and works once {others} is applied"
    elif not fwd.blocking:
        why = f"{phase} does not wait for it, so it converges once {others} is applied"
    elif fwd.later:
        why = f"Flux applies {others} only after {phase} is Ready, so {phase} is never Ready"
    else:
        why = f"{phase} does not depend on {others}, so {phase}'s wait can time out before it exists"
    return f"{why}; create it in {phase} or a phase it depends on, or move what refers to it after {others}"


class _Locator:
    """Files and lines of references and creators, generated ConfigMaps found by their input file."""

    def __init__(self, tree: Tree, cluster: Cluster) -> None:
        self.tree, self.cluster = tree, cluster
        self.config_maps = _config_maps(cluster)
        self._inputs: dict[str, str] | None = None

    def creator(self, creator: Creator) -> str:
        found = where(self.tree, self.cluster, creator.phase, creator.obj)
        return _at(found)

    def reference(self, fwd: ForwardRef) -> dict[str, Any]:
        """The cluster, phase, file and line of a forward reference."""
        ref = fwd.ref
        if ref.entry is None:
            return where(self.tree, self.cluster, fwd.phase, fwd.obj, *ref.path)
        namespace, name, key = ref.entry
        config_map = self.config_maps.get((namespace, name))
        text = _dict(_dict(config_map).get("data")).get(key)
        found = where(self.tree, self.cluster, fwd.phase, config_map or fwd.obj)
        src = self.tree.source_of(config_map, self.cluster.name) if config_map is not None else None
        if src is not None:  # a ConfigMap written out: the text starts below its key
            found["line"] = (line_of(src.data, "data", key) or src.line) + (ref.line or 0)
        elif isinstance(text, str) and text in self.inputs:
            found["file"], found["line"] = self.inputs[text], ref.line
        return found

    @property
    def inputs(self) -> dict[str, str]:
        """The text of each file a generator reads -> the file (relative to the repository)."""
        if self._inputs is None:
            self._inputs = {}
            root = self.tree.repo.root
            for path in sorted(self.tree.sources.texts):
                try:
                    with open(path, encoding="utf-8") as handle:
                        self._inputs.setdefault(handle.read(), os.path.relpath(path, root))
                except (OSError, UnicodeDecodeError):
                    continue
        return self._inputs


def _at(found: dict[str, Any]) -> str:
    file, line = found.get("file", ""), found.get("line")
    return f"{file}:{line}" if file and line else file or "?"


# --- small helpers ---------------------------------------------------------------------------------


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _at_path(path: str, value: str) -> dict[str, Any]:
    """``{a: {b: value}}`` for ``a.b`` (helm's ``--set``-style targetPath, without its escapes)."""
    out: dict[str, Any] = {}
    node = out
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


@functools.lru_cache(maxsize=256)
def _parse(text: str) -> dict[str, Any] | None:
    """The values of a ``valuesFrom`` text, with lines (cached: every check reads the same texts; the
    result is never changed, merges copy).
    """
    try:
        docs = load_all(text, resource=False)
    except YamlSyntaxError:
        return None
    return docs[0] if docs and isinstance(docs[0], dict) else None
