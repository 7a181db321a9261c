"""A simulated k3s node with Flux: its state folder, clock, API, controllers, and the loops that drive them.

:meth:`SimCluster.create` makes a node (k3s's own CRDs and the ``default``, ``kube-system``,
``kube-public`` and ``kube-node-lease`` namespaces, as a fresh k3s server has them, and a Node
object that is Ready); :meth:`SimCluster.install_flux` is ``flux install``: the ``flux-system``
namespace, the CRDs of Flux's default components (source, kustomize, helm, notification
controllers; the schemas of Flux 2.7 shipped with :mod:`fluxops.layout.flux_schemas`) and their
Deployments, after which the controllers run. :meth:`SimCluster.run` drives the controllers
in-process on a :class:`~fluxops.sim.clock.VirtualClock`; :meth:`SimCluster.serve` is the loop of a
``k3s server`` process on the node's scaled clock.
"""

from __future__ import annotations

import copy
import json
import socket
import threading
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from fluxops.layout import flux_schemas
from fluxops.layout.kustomize import Builder
from fluxops.masking import Secret, reveal
from fluxops.sim.api import Api
from fluxops.sim.clock import Clock, ScaledClock, VirtualClock, rfc3339
from fluxops.sim.controllers import Controllers
from fluxops.sim.results import Context, Event
from fluxops.sim.store import SimError, State, Store
from fluxops.sim.validation import Validator

KUBERNETES = "v1.33.5+k3s1"
FLUX_COMPONENTS = ("source-controller", "kustomize-controller", "helm-controller", "notification-controller")
FLUX_GROUPS = ("source.toolkit.fluxcd.io", "kustomize.toolkit.fluxcd.io", "helm.toolkit.fluxcd.io",
               "notification.toolkit.fluxcd.io")  # fmt: skip
SHORT_NAMES = {"Kustomization": ["ks"], "GitRepository": ["gitrepo"], "HelmRepository": ["helmrepo"],
               "HelmChart": ["hc"], "HelmRelease": ["hr"], "OCIRepository": ["ocirepo"]}  # fmt: skip
K3S_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
K3S_CRDS = (("helm.cattle.io", "HelmChart", "helmcharts", "Namespaced"),
            ("helm.cattle.io", "HelmChartConfig", "helmchartconfigs", "Namespaced"),
            ("k3s.cattle.io", "Addon", "addons", "Namespaced"),
            ("k3s.cattle.io", "ETCDSnapshotFile", "etcdsnapshotfiles", "Cluster"))  # fmt: skip
DEFAULT_SETTINGS: dict[str, Any] = {
    "git_rewrites": {},
    "git_protocols": "file:ssh",
    "strict_substitutions": False,
}


def flux_crds() -> list[dict[str, Any]]:
    """The CRD objects ``flux install`` applies (Flux's default components), with their short names."""
    folder = resources.files("fluxops.layout").joinpath("schema_data", "flux")
    crds = []
    for group in FLUX_GROUPS:
        for kind in flux_schemas.kinds(group):
            file = flux_schemas.index()["kinds"][group][kind]
            crd = json.loads(folder.joinpath(*file.split("/")).read_text(encoding="utf-8"))
            crd["metadata"] = {**crd.get("metadata", {}), "labels": {"app.kubernetes.io/part-of": "flux",
                               "app.kubernetes.io/instance": "flux-system"}}  # fmt: skip
            if kind in SHORT_NAMES:
                crd["spec"]["names"]["shortNames"] = SHORT_NAMES[kind]
            crds.append(crd)
    return crds


def _k3s_crd(group: str, kind: str, plural: str, scope: str) -> dict[str, Any]:
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "scope": scope,
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": schema}],
        },
    }


def controller_deployment(component: str, version: str) -> dict[str, Any]:
    """The Deployment of one Flux controller, as ``flux install`` creates it (no pods run here)."""
    labels = {"app": component}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": component,
            "namespace": "flux-system",
            "labels": {
                **labels,
                "app.kubernetes.io/part-of": "flux",
                "app.kubernetes.io/component": component,
            },
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{"name": "manager", "image": f"ghcr.io/fluxcd/{component}:{version}"}]
                },
            },
        },
    }


class SimCluster:
    """One simulated node (its state folder); ``clock`` defaults to the node's scaled clock."""

    def __init__(
        self, folder: Path, clock: Clock | None = None, *, cache_dir: Path | None = None, durable: bool = True
    ) -> None:
        self.store = Store(folder, durable=durable)
        self.folder = Path(folder)
        self._clock = clock
        cache = Path(cache_dir) if cache_dir is not None else self.folder / "cache"
        self.builder = Builder(cache / "kustomize")
        self.validator = Validator()
        self.controllers = Controllers(self.store, self._context, self.now)

    # -- creation -----------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        folder: Path,
        *,
        name: str | None = None,
        kubernetes: str = KUBERNETES,
        time_factor: float = 1.0,
        clock: Clock | None = None,
        settings: dict[str, Any] | None = None,
        cache_dir: Path | None = None,
        role: str = "server",
        durable: bool = True,
    ) -> SimCluster:
        """A fresh node in ``folder`` (SimError if one is there): k3s's namespaces and CRDs, a Ready Node."""
        scaled = ScaledClock(time_factor)
        node = {
            "name": name or socket.gethostname(),
            "role": role,
            "kubernetes": kubernetes,
            "clock": {"factor": time_factor, "origin": scaled.origin, "real_origin": scaled.real_origin},
            "settings": {**DEFAULT_SETTINGS, **(settings or {})},
            "flux": None,
        }
        cluster = cls(folder, clock, cache_dir=cache_dir, durable=durable)
        cluster.store.create(node)
        with cluster.store.transaction() as state:
            api = cluster.api(state)
            for namespace in K3S_NAMESPACES:
                api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}, "k3s")
            for crd in K3S_CRDS:
                api.apply(_k3s_crd(*crd), "k3s", schema=False)
            node_obj = cluster.node_object(node)
            _, stored = api.apply(node_obj, "k3s", schema=False)
            api.write_status(stored, node_obj["status"])
        return cluster

    def node_object(self, node: dict[str, Any]) -> dict[str, Any]:
        """The Node object of this node: Ready, with k3s's roles and kubelet version."""
        server = node.get("role") == "server"
        labels = {"kubernetes.io/hostname": node["name"], "kubernetes.io/os": "linux"}
        if server:
            labels.update(
                {"node-role.kubernetes.io/control-plane": "true", "node-role.kubernetes.io/master": "true"}
            )
        now = rfc3339(self.now())
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": node["name"], "labels": labels},
            "status": {
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "kubelet is posting ready status", "lastTransitionTime": now}],
                "nodeInfo": {"kubeletVersion": node["kubernetes"], "osImage": "simulated k3s node"},
            },
        }  # fmt: skip

    def install_flux(self, version: str | None = None) -> list[str]:
        """``flux install``: namespace, CRDs and controllers; returns ``Kind/name action`` lines."""
        version = version or flux_schemas.release()
        lines = []
        with self.store.transaction() as state:
            api = self.api(state)
            objects = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "flux-system"}}]
            objects += flux_crds()
            components = flux_schemas.index().get("components") or {}
            objects += [controller_deployment(c, str(components.get(c, version))) for c in FLUX_COMPONENTS]
            for obj in objects:
                action, stored = api.apply(obj, "flux", schema=obj["kind"] != "CustomResourceDefinition")
                namespace = stored["metadata"].get("namespace")
                lines.append(
                    f"{obj['kind']}/{namespace + '/' if namespace else ''}{obj['metadata']['name']} {action}"
                )
            state.node["flux"] = {"version": version, "installed": rfc3339(self.now())}
        return lines

    # -- reading and writing --------------------------------------------------------------------

    def now(self) -> float:
        """The node's simulated time."""
        return self.clock.now()

    @property
    def clock(self) -> Clock:
        """The clock given, else the node's own scaled clock."""
        if self._clock is None:
            info = self.store.read().node.get("clock") or {}
            self._clock = ScaledClock(
                float(info.get("factor", 1.0)), info.get("origin"), info.get("real_origin")
            )
        return self._clock

    def api(self, state: State) -> Api:
        """The API over ``state`` at the node's time."""
        return Api(state, self.validator, self.now())

    def read(self) -> State:
        """The node's state now."""
        return self.store.read()

    def apply(
        self,
        objects: Iterable[dict[str, Any]],
        manager: str = "kubectl",
        default_namespace: str | None = "default",
    ) -> list[tuple[str, dict[str, Any]]]:
        """Apply objects in one transaction, all or nothing: (action, stored); ApiError if one is refused."""
        with self.store.transaction() as state:
            work = state.copy()
            api = self.api(work)
            done = [api.apply(obj, manager, default_namespace=default_namespace) for obj in objects]
            state.data.update(copy.deepcopy(work.data))
        return done

    def put_secret(self, name: str, namespace: str, data: dict[str, str | bytes | Secret]) -> str:
        """Create or update an Opaque Secret (values kept only in the 0600 state document)."""
        import base64

        encoded = {}
        for key, value in data.items():
            raw = value if isinstance(value, bytes) else reveal(value).encode()
            encoded[key] = base64.b64encode(raw).decode()
        secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                  "metadata": {"name": name, "namespace": namespace}, "data": encoded}  # fmt: skip
        return self.apply([secret], "kubectl")[0][0]

    def set_faults(self, faults: dict[str, Any]) -> None:
        """Replace the injected faults (see :mod:`fluxops.sim.faults`)."""
        with self.store.transaction() as state:
            state.data["faults"] = copy.deepcopy(faults)

    # -- driving the controllers ----------------------------------------------------------------

    def _context(self, state: State, now: float) -> Context:
        settings = {**DEFAULT_SETTINGS, **(state.node.get("settings") or {})}
        faults = state.faults if isinstance(state.faults, dict) else {}
        return Context(self.builder, self.validator, self.folder / "artifacts", now, settings, faults)

    def run(
        self,
        *,
        stop: Callable[[State], bool],
        horizon: float,
        on_events: Callable[[list[Event]], None] | None = None,
    ) -> None:
        """Drive the controllers on the virtual clock until ``stop`` or nothing due by ``horizon``."""
        clock = self.clock
        if not isinstance(clock, VirtualClock):
            raise SimError(
                "SimCluster.run needs a VirtualClock; a node on a scaled clock is driven by serve()"
            )
        while True:
            events, worked = self.controllers.tick()
            if events and on_events is not None:
                on_events(events)
            if stop(self.store.read()):
                return
            if worked:
                continue
            due = self.controllers.next_due()
            if due is None or due > horizon:
                return
            clock.advance(max(due, clock.now()))

    def serve(self, stopped: threading.Event, *, poll: float = 0.05) -> None:
        """The controllers' loop of a ``k3s server`` process: tick, then sleep until due (or ``poll`` s)."""
        while not stopped.is_set():
            if (self.store.read().faults or {}).get("unresponsive"):
                stopped.wait(poll)
                continue
            _, worked = self.controllers.tick()
            if worked:
                continue
            due = self.controllers.next_due()
            wait = poll
            if due is not None and isinstance(self.clock, ScaledClock):
                wait = min(poll, max(0.0, self.clock.real_seconds(due - self.now())))
            stopped.wait(wait)
