"""kubectl and flux on a cluster's server, over any :class:`fluxops.shell.Shell`.

On a real or sandbox host the commands are ``k3s kubectl`` and ``flux`` on the host's PATH with the k3s
kubeconfig, under ``sudo -n`` when the login user is not root (``k3s kubectl`` rather than ``kubectl``:
k3s' installer skips its ``kubectl`` link when another kubectl is on PATH, and that one may be any
version, or a cloud SDK's wrapper); :func:`simulated` runs the simulator's
commands (``python -m fluxops.sim.kubectl|flux``) on a local node folder, for tests.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fluxops.errors import FluxopsError
from fluxops.masking import Secret
from fluxops.shell import Result, Shell, Stdin

if TYPE_CHECKING:
    from fluxops.inventory import Host
    from fluxops.shell import Connections

K3S_KUBECONFIG = "/etc/rancher/k3s/k3s.yaml"
FLUX_NAMESPACE = "flux-system"
KUSTOMIZE_GROUP = "kustomize.toolkit.fluxcd.io"


class BootstrapError(FluxopsError):
    """Bootstrap cannot go on: what failed and what to try."""


@dataclass
class Node:
    """How to run kubectl and flux on one cluster's server."""

    shell: Shell
    kubectl_argv: tuple[str, ...] = ("kubectl",)
    flux_argv: tuple[str, ...] = ("flux",)
    kubeconfig: str = K3S_KUBECONFIG
    sudo: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 600.0

    @property
    def name(self) -> str:
        """The host's name as the shell reports it."""
        return self.shell.name

    def _prefix(self) -> tuple[str, ...]:
        return ("sudo", "-n") if self.sudo else ()

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: Stdin = None,
        check: bool = True,
        timeout: float | None = None,
        secrets: Iterable[str | Secret] = (),
    ) -> Result:
        """Run ``argv`` on the node (under sudo when needed)."""
        return self.shell.run(
            [*self._prefix(), *argv],
            stdin=stdin,
            check=check,
            timeout=timeout or self.timeout,
            env=dict(self.env) or None,
            secrets=secrets,
        )

    def kubectl(
        self,
        *args: str,
        stdin: Stdin = None,
        check: bool = True,
        timeout: float | None = None,
        secrets: Iterable[str | Secret] = (),
    ) -> Result:
        """``kubectl --kubeconfig K ARGS``."""
        argv = [*self.kubectl_argv, "--kubeconfig", self.kubeconfig, *args]
        return self.run(argv, stdin=stdin, check=check, timeout=timeout, secrets=secrets)

    def flux(self, *args: str, check: bool = True, timeout: float | None = None) -> Result:
        """``flux --kubeconfig K ARGS``."""
        return self.run(
            [*self.flux_argv, "--kubeconfig", self.kubeconfig, *args], check=check, timeout=timeout
        )

    def get_json(self, *args: str, check: bool = True) -> dict[str, Any] | None:
        """``kubectl get ARGS -o json`` parsed; None when it is not found (``check`` false)."""
        result = self.kubectl("get", *args, "-o", "json", check=False)
        if not result.ok:
            absent = ("NotFound", "not found", "doesn't have a resource type")
            if not check and any(word in result.stderr for word in absent):
                return None
            raise BootstrapError(f"kubectl get {' '.join(args)} on {self.name}: {result.stderr.strip()}")
        try:
            data = json.loads(result.stdout)
        except json.JSONDecodeError as exc:
            raise BootstrapError(
                f"kubectl get {' '.join(args)} on {self.name} printed no JSON: {exc}"
            ) from None
        return data if isinstance(data, dict) else None

    def kustomizations(self) -> list[dict[str, Any]]:
        """Every Flux Kustomization on the node (empty before Flux is installed)."""
        data = self.get_json(f"kustomizations.{KUSTOMIZE_GROUP}", "-A", check=False)
        return [i for i in (data or {}).get("items") or [] if isinstance(i, dict)]

    def apply(self, documents: str | Secret, *, secrets: Iterable[str | Secret] = ()) -> list[str]:
        """``kubectl apply -f -`` with the YAML on stdin; kubectl's lines (``kind/name created``...)."""
        result = self.kubectl("apply", "-f", "-", stdin=documents, check=False, secrets=secrets)
        if not result.ok:
            raise BootstrapError(f"kubectl apply on {self.name} failed: {result.stderr.strip()}")
        return [line for line in result.stdout.splitlines() if line.strip()]


def remote(shell: Shell, user: str, become: bool) -> Node:
    """The node behind an SSH shell: k3s and flux on PATH, sudo unless the user is root."""
    return Node(shell, kubectl_argv=("k3s", "kubectl"), sudo=become or user != "root")


def for_host(connections: Connections, host: Host) -> Node:
    """The node of an inventory host, over its SSH connection (host key checked on connect)."""
    return remote(connections.get(host), host.user, host.become)


@contextmanager
def over_ssh(
    host: Host,
    *,
    connect_timeout: float = 10.0,
    accept_new_host_key: bool = False,
    timeout: float | None = None,
) -> Iterator[Node]:
    """The node of an inventory host over a connection of its own, closed afterwards; ``timeout``
    limits each command (default: the Node's)."""
    from fluxops.shell import Connections

    with Connections(connect_timeout=connect_timeout, accept_new_host_key=accept_new_host_key) as conns:
        node = for_host(conns, host)
        if timeout is not None:
            node.timeout = timeout
        yield node


def simulated(shell: Shell, prefix: Path, python: str = sys.executable) -> Node:
    """A simulated node whose host paths live under ``prefix`` (``$FLUXOPS_SIM_PREFIX``)."""
    return Node(
        shell,
        kubectl_argv=(python, "-m", "fluxops.sim.kubectl"),
        flux_argv=(python, "-m", "fluxops.sim.flux"),
        kubeconfig=str(prefix / K3S_KUBECONFIG.lstrip("/")),
        env={"FLUXOPS_SIM_PREFIX": str(prefix)},
    )
