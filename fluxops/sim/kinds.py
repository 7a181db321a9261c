"""Which kinds a simulated node serves: Kubernetes' own (the versions its release serves, alpha APIs
off as on a default API server), k3s's, and every kind an applied CustomResourceDefinition registers
(Flux's come with ``flux install``).

The API server answers a kind it does not serve with ``no matches for kind "X" in version "G/V"``
(client-go's RESTMapper ``NoKindMatchError``), which is what Flux's server-side dry-run reports.
Served versions come from the schema data of :mod:`fluxops.layout.kube_schemas`; names, short names
and scope from the table below (``kubectl api-resources`` on a k3s node).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from fluxops.layout import kube_schemas
from fluxops.sim.store import State, group_of, version_of

CRD_GROUP = "apiextensions.k8s.io"


@dataclass(frozen=True)
class Kind:
    """A served kind: group, versions, names and scope; ``crd`` says an applied CRD registers it."""

    group: str
    kind: str
    versions: tuple[str, ...]
    plural: str
    namespaced: bool
    short: tuple[str, ...] = ()
    crd: bool = False

    @property
    def singular(self) -> str:
        """The lower-case kind (kubectl accepts it as a resource name)."""
        return self.kind.lower()

    @property
    def resource(self) -> str:
        """``plural.group`` (``plural`` for the core group), as kubectl names the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def api_version(self, version: str | None = None) -> str:
        """``group/version`` (the preferred, first, version unless one is given)."""
        version = version or self.versions[0]
        return f"{self.group}/{version}" if self.group else version

    def names(self) -> set[str]:
        """Every name kubectl accepts for the resource."""
        base = {self.plural, self.singular, self.kind, *self.short}
        full = {f"{n}.{self.group}" for n in (self.plural, self.singular)} if self.group else set()
        return {n.lower() for n in base} | full


def _k(group: str, kind: str, versions: str, plural: str, namespaced: bool, short: str = "") -> Kind:
    return Kind(group, kind, tuple(versions.split()), plural, namespaced, tuple(short.split()))


# Names and scope of Kubernetes' kinds (kubectl api-resources on a k3s v1.33 node); k3s's own CRDs last.
BUILTIN: tuple[Kind, ...] = (
    _k("", "Namespace", "v1", "namespaces", False, "ns"),
    _k("", "Node", "v1", "nodes", False, "no"),
    _k("", "PersistentVolume", "v1", "persistentvolumes", False, "pv"),
    _k("", "ConfigMap", "v1", "configmaps", True, "cm"),
    _k("", "Secret", "v1", "secrets", True),
    _k("", "Service", "v1", "services", True, "svc"),
    _k("", "ServiceAccount", "v1", "serviceaccounts", True, "sa"),
    _k("", "PersistentVolumeClaim", "v1", "persistentvolumeclaims", True, "pvc"),
    _k("", "Pod", "v1", "pods", True, "po"),
    _k("", "Endpoints", "v1", "endpoints", True, "ep"),
    _k("", "LimitRange", "v1", "limitranges", True, "limits"),
    _k("", "ResourceQuota", "v1", "resourcequotas", True, "quota"),
    _k("", "ReplicationController", "v1", "replicationcontrollers", True, "rc"),
    _k("", "Event", "v1", "events", True, "ev"),
    _k("apps", "Deployment", "v1", "deployments", True, "deploy"),
    _k("apps", "StatefulSet", "v1", "statefulsets", True, "sts"),
    _k("apps", "DaemonSet", "v1", "daemonsets", True, "ds"),
    _k("apps", "ReplicaSet", "v1", "replicasets", True, "rs"),
    _k("apps", "ControllerRevision", "v1", "controllerrevisions", True),
    _k("batch", "Job", "v1", "jobs", True),
    _k("batch", "CronJob", "v1", "cronjobs", True, "cj"),
    _k("autoscaling", "HorizontalPodAutoscaler", "v2 v1", "horizontalpodautoscalers", True, "hpa"),
    _k("policy", "PodDisruptionBudget", "v1", "poddisruptionbudgets", True, "pdb"),
    _k("networking.k8s.io", "Ingress", "v1", "ingresses", True, "ing"),
    _k("networking.k8s.io", "IngressClass", "v1", "ingressclasses", False),
    _k("networking.k8s.io", "NetworkPolicy", "v1", "networkpolicies", True, "netpol"),
    _k("rbac.authorization.k8s.io", "Role", "v1", "roles", True),
    _k("rbac.authorization.k8s.io", "RoleBinding", "v1", "rolebindings", True),
    _k("rbac.authorization.k8s.io", "ClusterRole", "v1", "clusterroles", False),
    _k("rbac.authorization.k8s.io", "ClusterRoleBinding", "v1", "clusterrolebindings", False),
    _k("storage.k8s.io", "StorageClass", "v1", "storageclasses", False, "sc"),
    _k("storage.k8s.io", "CSIDriver", "v1", "csidrivers", False),
    _k("storage.k8s.io", "CSINode", "v1", "csinodes", False),
    _k("storage.k8s.io", "VolumeAttachment", "v1", "volumeattachments", False),
    _k(CRD_GROUP, "CustomResourceDefinition", "v1", "customresourcedefinitions", False, "crd crds"),
    _k("apiregistration.k8s.io", "APIService", "v1", "apiservices", False),
    _k("admissionregistration.k8s.io", "MutatingWebhookConfiguration", "v1",
       "mutatingwebhookconfigurations", False),
    _k("admissionregistration.k8s.io", "ValidatingWebhookConfiguration", "v1",
       "validatingwebhookconfigurations", False),
    _k("admissionregistration.k8s.io", "ValidatingAdmissionPolicy", "v1", "validatingadmissionpolicies",
       False),
    _k("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding", "v1",
       "validatingadmissionpolicybindings", False),
    _k("scheduling.k8s.io", "PriorityClass", "v1", "priorityclasses", False, "pc"),
    _k("node.k8s.io", "RuntimeClass", "v1", "runtimeclasses", False),
    _k("coordination.k8s.io", "Lease", "v1", "leases", True),
    _k("discovery.k8s.io", "EndpointSlice", "v1", "endpointslices", True),
    _k("certificates.k8s.io", "CertificateSigningRequest", "v1", "certificatesigningrequests", False, "csr"),
    _k("events.k8s.io", "Event", "v1", "events", True, "ev"),
    _k("helm.cattle.io", "HelmChart", "v1", "helmcharts", True),
    _k("helm.cattle.io", "HelmChartConfig", "v1", "helmchartconfigs", True),
    _k("k3s.cattle.io", "Addon", "v1", "addons", True),
    _k("k3s.cattle.io", "ETCDSnapshotFile", "v1", "etcdsnapshotfiles", False),
)  # fmt: skip
K3S_GROUPS = ("helm.cattle.io", "k3s.cattle.io")


def crd_kind(crd: dict[str, Any]) -> Kind | None:
    """The kind a CustomResourceDefinition registers (its served versions, storage version first)."""
    spec = crd.get("spec") if isinstance(crd.get("spec"), dict) else {}
    names = spec.get("names") if isinstance(spec.get("names"), dict) else {}
    versions = [v for v in spec.get("versions") or [] if isinstance(v, dict) and v.get("served", True)]
    if not (spec.get("group") and names.get("kind") and names.get("plural") and versions):
        return None
    versions.sort(key=lambda v: not v.get("storage"))
    return Kind(
        str(spec["group"]),
        str(names["kind"]),
        tuple(str(v.get("name")) for v in versions),
        str(names["plural"]),
        spec.get("scope", "Namespaced") != "Cluster",
        tuple(str(s) for s in names.get("shortNames") or []),
        crd=True,
    )


def crd_version(crd: dict[str, Any], version: str) -> dict[str, Any] | None:
    """The ``spec.versions`` entry of ``version`` in a CRD."""
    for entry in (crd.get("spec") or {}).get("versions") or []:
        if isinstance(entry, dict) and entry.get("name") == version:
            return entry
    return None


def release_of(state: State) -> str:
    """The Kubernetes release whose APIs the node serves (``1.33`` for k3s ``v1.33.5+k3s1``)."""
    version = str(state.node.get("kubernetes", "v1.33.0")).lstrip("v")
    wanted = ".".join(version.split("+")[0].split(".")[:2])
    return kube_schemas.choose(wanted)[0]


@functools.cache
def builtin(release: str) -> tuple[Kind, ...]:
    """Kubernetes' and k3s's kinds as ``release`` serves them (versions without alpha APIs, GA first)."""
    kinds = []
    for entry in BUILTIN:
        if entry.group in K3S_GROUPS:
            kinds.append(entry)
            continue
        offered = kube_schemas.versions_of(release, entry.group, entry.kind)
        versions = tuple(v for v in offered if "alpha" not in v)
        if versions:
            kinds.append(Kind(entry.group, entry.kind, versions, entry.plural, entry.namespaced, entry.short))
    return tuple(kinds)


def served(state: State) -> list[Kind]:
    """Every kind the node serves now: built-in ones, then those of its established CRDs."""
    kinds = list(builtin(release_of(state)))
    for crd in state.list(CRD_GROUP, "CustomResourceDefinition"):
        found = crd_kind(crd)
        if found is not None:
            kinds.append(found)
    return kinds


def lookup(state: State, api_version: str, kind: str) -> Kind | None:
    """The served kind of ``apiVersion``/``kind`` (None: no match, as the RESTMapper says)."""
    group, version = group_of(api_version), version_of(api_version)
    for candidate in served(state):
        if candidate.group == group and candidate.kind == kind and version in candidate.versions:
            return candidate
    return None


def by_group_kind(state: State, group: str, kind: str) -> Kind | None:
    """The served kind with this group and kind, whatever the version."""
    return next((k for k in served(state) if k.group == group and k.kind == kind), None)


def resolve(state: State, name: str) -> Kind | None:
    """The kind kubectl means by a resource name (``ks``, ``kustomizations``, ``deploy.apps`` ...)."""
    wanted = name.lower()
    for candidate in served(state):  # built-in kinds first, as kubectl resolves them
        if wanted in candidate.names():
            return candidate
    return None


def no_match(api_version: str, kind: str) -> str:
    """The RESTMapper's message for a kind the node does not serve."""
    return f'no matches for kind "{kind}" in version "{api_version}"'
