"""A large home-ops-shaped Flux repository, written for bench/layout_validate.py.

Each cluster is bootstrapped at ``k8s/clusters/<name>`` (``flux-system/gotk-sync.yaml``) and applies
``cluster-apps``, which applies ``k8s/<name>/apps``: one folder per namespace (``namespace:``, the
cluster's ``common`` component with its ``cluster-settings`` ConfigMap) holding an app folder per
app, each with its ``ks.yaml`` (a Flux Kustomization: targetNamespace, postBuild substitute and
substituteFrom, some with the ``volsync`` component, some with ``images``, some depending on an app
of another namespace) and its ``app/`` folder (a HelmRelease with its OCIRepository, or a
Deployment, Service and HTTPRoute). Every cluster has its own copy of everything, so each cluster
costs as much as the first; with the entry ``flux-system`` and ``cluster-apps`` a cluster holds
``kustomizations`` Flux Kustomizations.

    from bench.big_repo import write_repo
    repo = write_repo(Path("/tmp/big"), clusters=2)   # repo.paths: every Kustomization's spec.path
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CLUSTER_NAMES = ("main", "storage", "edge", "lab", "dmz", "cloud", "backup", "test")
NAMESPACES = (
    "cert-manager",
    "database",
    "default",
    "downloads",
    "home-automation",
    "kube-system",
    "media",
    "monitoring",
    "network",
    "security",
)
CONTROLLERS = ("source-controller", "kustomize-controller", "helm-controller", "notification-controller")
KUSTOMIZE_API = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
COMPONENT_API = "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n"


@dataclass(frozen=True)
class BigRepo:
    """A written repository: its root, its clusters, and every Flux Kustomization's ``spec.path``."""

    root: Path
    clusters: tuple[str, ...]
    paths: tuple[str, ...]


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _resources(entries: list[str], head: str = KUSTOMIZE_API) -> str:
    return head + "resources:\n" + "".join(f"  - {e}\n" for e in entries)


def _flux_system(root: Path, cluster: str) -> None:
    folder = f"k8s/clusters/{cluster}/flux-system"
    components = "".join(
        f"---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {c}\n  namespace: flux-system\n"
        f"spec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: {c}\n  template:\n"
        f"    metadata:\n      labels:\n        app: {c}\n    spec:\n      containers:\n"
        f"        - name: manager\n          image: ghcr.io/fluxcd/{c}:v1.7.0\n"
        "          args:\n            - --watch-all-namespaces=true\n            - --log-level=info\n"
        for c in CONTROLLERS
    )
    namespace = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: flux-system\n"
    _write(root, f"{folder}/gotk-components.yaml", f"# Flux v2.7.0, trimmed\n---\n{namespace}{components}")
    _write(
        root,
        f"{folder}/gotk-sync.yaml",
        "---\napiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n"
        "  name: flux-system\n  namespace: flux-system\nspec:\n  interval: 1m0s\n  ref:\n"
        "    branch: main\n  secretRef:\n    name: flux-system\n"
        "  url: ssh://git@github.com/example/home-ops\n"
        "---\napiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n"
        "  name: flux-system\n  namespace: flux-system\nspec:\n  interval: 10m0s\n"
        f"  path: ./k8s/clusters/{cluster}\n  prune: true\n  sourceRef:\n"
        "    kind: GitRepository\n    name: flux-system\n",
    )
    _write(root, f"{folder}/kustomization.yaml", _resources(["gotk-components.yaml", "gotk-sync.yaml"]))
    _write(
        root, f"k8s/clusters/{cluster}/kustomization.yaml", _resources(["flux-system", "cluster-apps.yaml"])
    )
    _write(
        root,
        f"k8s/clusters/{cluster}/cluster-apps.yaml",
        "---\napiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n"
        "  name: cluster-apps\n  namespace: flux-system\nspec:\n  decryption:\n    provider: sops\n"
        "    secretRef:\n      name: sops-age\n  deletionPolicy: WaitForTermination\n  interval: 1h\n"
        f"  path: ./k8s/{cluster}/apps\n  prune: true\n  sourceRef:\n    kind: GitRepository\n"
        "    name: flux-system\n    namespace: flux-system\n  wait: false\n  patches:\n"
        "    - patch: |-\n        apiVersion: kustomize.toolkit.fluxcd.io/v1\n        kind: Kustomization\n"
        "        metadata:\n          name: _\n        spec:\n          decryption:\n"
        "            provider: sops\n            secretRef:\n              name: sops-age\n"
        "          deletionPolicy: WaitForTermination\n"
        "      target:\n        group: kustomize.toolkit.fluxcd.io\n        kind: Kustomization\n",
    )


def _components(root: Path, cluster: str, index: int) -> None:
    base = f"k8s/{cluster}/components"
    _write(root, f"{base}/common/kustomization.yaml", _resources(["./cluster-settings.yaml"], COMPONENT_API))
    _write(
        root,
        f"{base}/common/cluster-settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cluster-settings\ndata:\n"
        f"  CLUSTER_NAME: {cluster}\n  CLUSTER_DOMAIN: {cluster}.example.com\n  TIMEZONE: Europe/Berlin\n"
        f"  LB_IP_INTERNAL: 10.{index}.0.10\n",
    )
    _write(root, f"{base}/volsync/kustomization.yaml", _resources(["./pvc.yaml"], COMPONENT_API))
    _write(
        root,
        f"{base}/volsync/pvc.yaml",
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: ${APP}\nspec:\n  accessModes:\n"
        "    - ReadWriteOnce\n  resources:\n    requests:\n      storage: ${VOLSYNC_CAPACITY:=1Gi}\n"
        "  storageClassName: ${VOLSYNC_STORAGECLASS:=ceph-block}\n",
    )


def _ks(cluster: str, namespace: str, app: str, extra: str) -> str:
    return (
        "---\napiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n"
        f"  name: {app}\nspec:\n{extra}  interval: 1h\n"
        f"  path: ./k8s/{cluster}/apps/{namespace}/{app}/app\n  postBuild:\n    substitute:\n"
        f"      APP: {app}\n    substituteFrom:\n      - name: cluster-settings\n        kind: ConfigMap\n"
        "  prune: true\n  sourceRef:\n    kind: GitRepository\n    name: flux-system\n"
        f"    namespace: flux-system\n  targetNamespace: {namespace}\n  wait: false\n"
    )


def _helm_app(root: Path, folder: str, app: str) -> None:
    _write(
        root,
        f"{folder}/helmrelease.yaml",
        "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: ${APP}\nspec:\n"
        "  chartRef:\n    kind: OCIRepository\n    name: ${APP}\n  interval: 1h\n  values:\n"
        "    controllers:\n      main:\n        containers:\n          app:\n            image:\n"
        f"              repository: ghcr.io/example/{app}\n              tag: 1.0.0\n"
        "            env:\n              TZ: ${TIMEZONE}\n    route:\n      app:\n"
        '        hostnames: ["{{ .Release.Name }}.${CLUSTER_DOMAIN}"]\n',
    )
    _write(
        root,
        f"{folder}/ocirepository.yaml",
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: OCIRepository\nmetadata:\n  name: ${APP}\nspec:\n"
        "  interval: 15m\n  layerSelector:\n"
        "    mediaType: application/vnd.cncf.helm.chart.content.v1.tar+gzip\n    operation: copy\n"
        "  ref:\n    tag: 4.4.0\n  url: oci://ghcr.io/bjw-s-labs/helm/app-template\n",
    )
    _write(root, f"{folder}/kustomization.yaml", _resources(["./helmrelease.yaml", "./ocirepository.yaml"]))


def _plain_app(root: Path, folder: str, app: str) -> None:
    labels = f"      app.kubernetes.io/name: {app}\n"
    _write(
        root,
        f"{folder}/deployment.yaml",
        f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {app}\nspec:\n  replicas: 1\n"
        f"  selector:\n    matchLabels:\n{labels}  template:\n    metadata:\n      labels:\n  {labels}"
        f"    spec:\n      containers:\n        - name: {app}\n          image: ghcr.io/example/{app}:1.0.0\n"
        "          env:\n            - name: TZ\n              value: ${TIMEZONE}\n"
        "          ports:\n            - name: http\n              containerPort: 8080\n",
    )
    _write(
        root,
        f"{folder}/service.yaml",
        f"apiVersion: v1\nkind: Service\nmetadata:\n  name: {app}\nspec:\n  selector:\n  {labels}"
        "  ports:\n    - name: http\n      port: 80\n      targetPort: http\n",
    )
    _write(
        root,
        f"{folder}/httproute.yaml",
        f"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: {app}\nspec:\n"
        f'  hostnames: ["{app}.${{CLUSTER_DOMAIN}}"]\n  parentRefs:\n    - name: envoy-internal\n'
        f"      namespace: network\n  rules:\n    - backendRefs:\n"
        f"        - name: {app}\n          port: 80\n",
    )
    _write(
        root,
        f"{folder}/kustomization.yaml",
        _resources(["./deployment.yaml", "./service.yaml", "./httproute.yaml"]),
    )


def _apps(root: Path, cluster: str, count: int) -> list[str]:
    """``count`` apps spread over the namespaces; returns their ``spec.path``s."""
    by_namespace: dict[str, list[str]] = {ns: [] for ns in NAMESPACES}
    paths = []
    previous: tuple[str, str] | None = None
    for i in range(count):
        namespace = NAMESPACES[i % len(NAMESPACES)]
        app = f"{cluster}-{namespace.split('-')[0]}-{i:02d}"  # each cluster's apps are its own
        folder = f"k8s/{cluster}/apps/{namespace}/{app}"
        extra = ""
        if i % 3 == 1:
            extra += "  components:\n    - ../../../../components/volsync\n"
        if i % 4 == 3 and previous is not None:
            extra += f"  dependsOn:\n    - name: {previous[1]}\n      namespace: {previous[0]}\n"
        if i % 3 == 2:
            extra += f"  images:\n    - name: ghcr.io/example/{app}\n      newTag: 1.0.1\n"
            _plain_app(root, f"{folder}/app", app)
        else:
            _helm_app(root, f"{folder}/app", app)
        _write(root, f"{folder}/ks.yaml", _ks(cluster, namespace, app, extra))
        by_namespace[namespace].append(f"./{app}/ks.yaml")
        paths.append(f"{folder}/app")
        previous = (namespace, app)
    used = [ns for ns, apps in by_namespace.items() if apps]
    for namespace in used:
        _write(
            root,
            f"k8s/{cluster}/apps/{namespace}/kustomization.yaml",
            f"{KUSTOMIZE_API}namespace: {namespace}\ncomponents:\n  - ../../components/common\n"
            + "resources:\n  - ./namespace.yaml\n"
            + "".join(f"  - {ks}\n" for ks in by_namespace[namespace]),
        )
        _write(
            root,
            f"k8s/{cluster}/apps/{namespace}/namespace.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: _\n  annotations:\n"
            "    kustomize.toolkit.fluxcd.io/prune: disabled\n",
        )
    _write(root, f"k8s/{cluster}/apps/kustomization.yaml", _resources([f"./{ns}" for ns in used]))
    return paths


def write_repo(dest: Path, clusters: int = 1, kustomizations: int = 80) -> BigRepo:
    """Write the repository into ``dest`` (created; must not exist): ``clusters`` clusters of
    ``kustomizations`` Flux Kustomizations each (``flux-system``, ``cluster-apps`` and the apps)."""
    if not 1 <= clusters <= len(CLUSTER_NAMES):
        raise ValueError(f"clusters must be 1 to {len(CLUSTER_NAMES)}, not {clusters}")
    if kustomizations < 3:
        raise ValueError(f"a cluster has at least 3 Kustomizations, not {kustomizations}")
    dest.mkdir(parents=True)
    names = CLUSTER_NAMES[:clusters]
    paths: list[str] = []
    for index, cluster in enumerate(names):
        _flux_system(dest, cluster)
        _components(dest, cluster, index)
        paths += [f"k8s/clusters/{cluster}", f"k8s/{cluster}/apps"]
        paths += _apps(dest, cluster, kustomizations - 2)
    return BigRepo(dest, names, tuple(paths))
